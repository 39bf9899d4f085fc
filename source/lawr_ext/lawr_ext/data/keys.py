"""The one contract between the dataset loader and every learner: the keys of a chunk batch.

A batch is a ``tensordict.TensorDict`` with ``batch_size=[B]``. H is the chunk (prediction) horizon,
A the action dimension (14 for Bimanual-Chunk), O the flat observation dimension.

Actions are stored and learned in the env's normalized action space ([-1, 1] per DoF).
A chunk starting at step t holds actions a_t .. a_{t+H-1}. Chunks never cross an episode end nor a
terminal transition: if either comes after k < H steps, the remaining H-k actions repeat the last real
action and ``MASK`` is False there; the reward sums only the k real steps and the bootstrap discount is
gamma^k (the exact rule: ``data/dataset.py``).
"""

OBS = "obs"                    # float32 [B, O]   observation at t
ACTIONS = "actions"            # float32 [B, H, A] action chunk a_t..a_{t+H-1} (normalized)
REWARD = "reward"              # float32 [B]      sum_{i<k} gamma^i r_{t+i}  (k = valid steps, normally H)
NEXT_OBS = "next_obs"          # float32 [B, O]   observation at t+k
TERMINAL = "terminal"          # float32 [B]      1 if the chunk ends on a terminal transition: the episode terminated,
                               #                  or the data forbids bootstrapping there (OGBench masks == 0)
DISCOUNT = "discount"          # float32 [B]      gamma^k, the bootstrap factor for V(next_obs)
MASK = "mask"                  # bool    [B, H]   True for real steps, False for padding after the episode end
SUCCESS = "success"            # float32 [B]      1 if the episode this chunk belongs to succeeded
STRATEGY = "strategy"          # int64   [B]      scripted-expert strategy id of the episode (-1 if unknown)
QUALITY = "quality"            # int64   [B]      expert quality label of the episode (-1 if unknown)
# image tasks' data only (a state-only dataset's batches have neither key):
IMAGES = "images"              # uint8   [B, C, H, W, 3] the C camera frames seen at t (dataset meta "cameras" order)
NEXT_IMAGES = "next_images"    # uint8   [B, C, H, W, 3] the frames seen at t+k (the row NEXT_OBS is read from)

# Q target (chunk-level TD):  REWARD + DISCOUNT * (1 - TERMINAL) * V_target(NEXT_OBS)
