"""The baselines L-AWR is compared against, in the same harness: same data, same normalizer, same evaluation.

One file each, ending in its ``STAGE`` (what it needs, how it is built, what it saves; algorithms/stage.py),
listed once in ``algorithms/registry.py``; its config is a dataclass in ``configs/baselines.py``.

=============  =====================================================  ================================
name           what                                                   built from (frozen unless noted)
=============  =====================================================  ================================
flow_bc        Phase-1 flow sampled from the prior (behaviour policy)  phase 1 flow
gaussian_awr   unimodal Gaussian actor, exp(A/tau)-weighted MLE        phase 2 critic (advantages)
fql            one-step policy distilled from the BC flow + max Q      phase 1 flow; own critic (phase-2 nets)
ofql           one Mean Flow trained on flow loss - alpha * Q          phase 1 flow (init, then trained); own critic
best_of_n      N behaviour samples, argmax of the Phase-2 Q            phase 1 flow, phase 2 critic
diffusion      DDPM (eps, cosine) + K-step DDIM, flow-sized network    only phase 1's normalizer (pure BC)
=============  =====================================================  ================================
"""
