"""The shared training loop, checkpoints, contexts and logging."""
from .checkpoint import CheckpointManager, atomic_save, atomic_write_text
from .context import batch_seed, get_contexts, seed_everything
from .logger import Logger, format_metrics, read_log
from .loop import Engine, NaNLossError, TrainingInterrupted, embed_dataset
from .evaluation import RetrievalEvaluator
from .run import load_run_args, load_trained_net
