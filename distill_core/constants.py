"""Names the whole lab shares: the roles a run plays and the statuses it goes through.

Pages, the CLI and the library compare against these, never against string literals.
"""
# Roles. A teacher is trained (or loaded) first; an assistant is a teacher distilled from the
# teacher (TAKD); a student learns from one of them, or from the labels alone.
TEACHER, ASSISTANT, STUDENT = "teacher", "assistant", "student"
ROLES = (TEACHER, ASSISTANT, STUDENT)

# The method of a model trained from the labels alone: every teacher, and each student's baseline.
SCRATCH = "scratch"

# How an ensemble combines its teachers: the mean of their logits, or of their probabilities.
ENSEMBLE_RULES = ("mean-logits", "mean-probabilities")

# Statuses of a run in the store.
QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = "queued", "running", "done", "failed", "cancelled", "interrupted"
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED)
ACTIVE = (QUEUED, RUNNING)  # still to finish
RETRYABLE = (FAILED, CANCELLED, INTERRUPTED)  # ended without a result: can be queued again
