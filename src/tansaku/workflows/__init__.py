"""Multi-step recipes (relax → SCF → DFPT), their on-disk state, resume, error recovery, executors."""
