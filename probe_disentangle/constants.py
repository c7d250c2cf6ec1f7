"""Every on-disk file name, in one place."""

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_PREFIX = "step_"
CHECKPOINT_STATE_FILE = "train_state.safetensors"
CHECKPOINT_META_FILE = "train_state.json"
LATEST_FILE = "latest"
PROBE_FILE = "probe.json"
PROBE_TENSORS_FILE = "probe.safetensors"
PROBE_FIT_FILE = "probe_fit.json"  # Probe.fit's normaliser and reference vectors, beside its checkpoints
PROBE_FIT_TENSORS_FILE = "probe_fit.safetensors"
# which JSON file records the SHA-256 of which safetensors file (named when a checksum fails)
CHECKSUM_FILES = {
    WEIGHTS_FILE: CONFIG_FILE,
    PROBE_TENSORS_FILE: PROBE_FILE,
    CHECKPOINT_STATE_FILE: CHECKPOINT_META_FILE,
    PROBE_FIT_TENSORS_FILE: PROBE_FIT_FILE,
}
DIRECTIONS_FILE = "directions.safetensors"
HEAD_DIR = "head"
