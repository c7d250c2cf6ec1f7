"""Every on-disk file name, in one place."""

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_PREFIX = "step_"
CHECKPOINT_STATE_FILE = "train_state.safetensors"
CHECKPOINT_META_FILE = "train_state.json"
LATEST_FILE = "latest"
