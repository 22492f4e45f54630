"""The one training loop, its configuration and hooks, checkpoints, the run folder, contexts
and logging. The engine knows no method: methods plug in through its public hooks."""
from .checkpoint import CheckpointManager, atomic_save, atomic_write_text
from .context import batch_seed, get_contexts, seed_everything
from .logger import Logger, format_metrics, read_log
from .loop import Engine, EngineConfig, NaNLossError, TrainingInterrupted, embed_dataset, enable_amp, reuse_embeddings
from .evaluation import RetrievalEvaluator
from .rundir import load_run_args, trained_params_path
