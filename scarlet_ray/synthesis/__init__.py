"""Stage 2: task-specific synthesis on shared contexts."""
