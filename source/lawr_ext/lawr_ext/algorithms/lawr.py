"""L-AWR top to bottom (the L-AWR paper): its three stages, in the paper's order.

    normalizers  fitted once on every dataset observation and action, then frozen (modules/normalizer.py);
                 the behaviour model keeps them and every stage after it reads them from there
    Mean Flow    phase 1: a one-step generator T(z; s) of action chunks, JiT x-prediction (flow.py)
    freeze       its EMA weights, requires_grad False: the action manifold, a hard constraint
    critic       phase 2: HL-Gauss V(s) and twin Q(s, chunk), chunk-level TD on dataset chunks only;
                 A = Q - V, or the paper's one-step form (critic.py)
    latent AWR   phase 3: a deterministic planner pi(s) -> z, trained by w(A) ||T(pi(s); s) - a||^2 with
                 gradients through the frozen T into the planner only (planner.py)

Acting is one planner pass and one flow pass per chunk: a = T(pi(s); s). Each stage is built from the
frozen products of the stages it needs and leaves its own in ``<run_dir>/<stage>/final.pt``; the runner
(runners/pipeline.py) trains them, and the baselines (algorithms/baselines/) after them.
"""

from __future__ import annotations

from lawr_ext.algorithms.critic import DistributionalCritic, divergence
from lawr_ext.algorithms.flow import BehaviorModel, MeanFlow
from lawr_ext.algorithms.flow_quality import flow_sample_quality
from lawr_ext.algorithms.planner import LatentAWR, LatentPlanner, LAWRPolicy
from lawr_ext.algorithms.stage import Stage, StageInputs
from lawr_ext.configs.critic import CriticConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.planner import PlannerConfig
from lawr_ext.modules.normalizer import fit_normalizers, unfitted_normalizers
from lawr_ext.modules.vision import ObservationEncoder


def observation_encoder(cfg: FlowConfig, state_normalizer, inputs: StageInputs):
    """What every network reads observations through: the state normalizer, or on image data the vision encoder
    around it (``modules/vision.py``), which Phase 1 trains with the flow and freezes with it."""
    if inputs.image_shape is None:
        return state_normalizer
    return ObservationEncoder(state_normalizer, inputs.state_dim, inputs.image_shape, cfg.encoder.features,
                              cfg.encoder.shift)


def mean_flow(cfg: FlowConfig, inputs: StageInputs) -> MeanFlow:
    """Phase 1: the normalizers, fitted here (the only place) on every observation and action of the dataset
    and frozen, the run's chunk basis, and the Mean Flow over chunks in their coordinates; on image data also the
    vision encoder, trained with the flow (from a local pretrained file if ``flow.encoder.pretrained``)."""
    dataset = inputs.dataset
    if dataset is None or inputs.action_normalization is None:
        raise ValueError("phase 'flow' needs the dataset and data.action_normalization to fit its normalizers")
    obs_normalizer, action_normalizer = fit_normalizers(dataset.observations, dataset.actions,
                                                        inputs.action_normalization)
    encoder = observation_encoder(cfg, obs_normalizer, inputs)
    if isinstance(encoder, ObservationEncoder) and cfg.encoder.pretrained:
        encoder.load_pretrained(cfg.encoder.pretrained, cfg.encoder.train_pretrained)
    return MeanFlow(cfg, *inputs.dims, encoder, action_normalizer, inputs.chunk_basis)


def behavior_model(cfg: FlowConfig, inputs: StageInputs) -> BehaviorModel:
    """Phase 1's product, frozen by ``MeanFlow.product``: the normalizers (and vision encoder), the chunk basis
    and the one-step decoder T(z; s)."""
    model = BehaviorModel.untrained(cfg, *inputs.dims, inputs.chunk_basis)
    if inputs.image_shape is not None:
        model.obs_normalizer = observation_encoder(cfg, unfitted_normalizers(inputs.state_dim, 1).obs, inputs)
    return model


def critic(cfg: CriticConfig, inputs: StageInputs) -> DistributionalCritic:
    """Phase 2: the critics see observations through the frozen normalizer; the critic is its own product."""
    return DistributionalCritic(cfg, *inputs.dims, inputs["flow"].obs_normalizer)


def latent_awr(cfg: PlannerConfig, inputs: StageInputs) -> LatentAWR:
    """Phase 3: the planner, regressed through the frozen decoder with weights from the frozen critic's A
    (and, with ``q_weight`` > 0, pushed up the frozen critic's Q)."""
    behavior, critic = inputs["flow"], inputs["critic"]
    return LatentAWR(cfg, *inputs.dims, behavior.decoder, critic.advantage, behavior.obs_normalizer, critic.q_value)


def lawr_policy(cfg: PlannerConfig, inputs: StageInputs) -> LAWRPolicy:
    """Phase 3's product: normalizer -> planner -> frozen decoder (``decode_steps`` jumps). Acting needs no critic."""
    behavior = inputs["flow"]
    return LAWRPolicy(behavior.obs_normalizer, LatentPlanner(cfg, *inputs.dims), behavior.decoder, cfg.decode_steps)


STAGES = (
    Stage("flow", config="flow", learner=mean_flow, product=behavior_model,
          report=flow_sample_quality),
    Stage("critic", config="critic", needs=("flow",), learner=critic, product=critic,
          check=lambda run, metrics: divergence(metrics, run.critic, run.guard)),
    Stage("planner", config="planner", needs=("flow", "critic"), learner=latent_awr, product=lawr_policy,
          method="lawr"),
)
