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
# scratch names beside a target ``name`` while it is being written: ``.{name}.{pid}.{token}{suffix}``
# (the writer's pid lets a later save tell a dead writer's leftovers from a live one's work)
TMP_SUFFIX = ".tmp"  # a file being written (atomic_write_bytes)
PARTIAL_SUFFIX = ".partial"  # a folder being written (atomic_folder), or the old one after a swap
READY_SUFFIX = ".ready"  # a complete new folder waiting to be renamed into place (no-exchange fallback)
OLD_SUFFIX = ".old"  # the previous folder, moved aside during the fallback's two renames
# a SAELens SAE folder (sae_lens.constants: SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME), read and written by steering/sae.py
SAELENS_CONFIG_FILE = "cfg.json"
SAELENS_WEIGHTS_FILE = "sae_weights.safetensors"
SAELENS_SCALER_FILE = "activation_scaler.json"  # a SAELens checkpoint's activation scaling factor
README_FILE = "README.md"  # the model card save_pretrained writes (Hugging Face hub layout); loading ignores it
# the demo's and eval's reports (report_html.py writes the HTML one beside the JSON and markdown)
REPORT_JSON_FILE = "report.json"
REPORT_MD_FILE = "report.md"
REPORT_HTML_FILE = "report.html"
EVAL_JSON_FILE = "eval.json"  # `eval`'s default report; its HTML page takes the same stem (eval.html)
# sizes on the HTML page: heat-map cells (pixels), how wide a small image grid is drawn at least
# (upscaled by a whole factor, pixelated, at most REPORT_MAX_IMAGE_SCALE), values per traversal
REPORT_HEAT_CELL = 36
REPORT_MIN_IMAGE_WIDTH = 320
REPORT_MAX_IMAGE_SCALE = 4
REPORT_TRAVERSAL_VALUES = 5
