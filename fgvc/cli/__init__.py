"""The command-line layer every command stands on: shared flags declared once (:mod:`fgvc.cli.flags`), loading a
run or model (:mod:`fgvc.cli.runs`) and the one error wrapper with the exit codes (:mod:`fgvc.cli.wrapper`:
0 ok, 1 a check failed, 2 user error, 130 interrupted)."""
from __future__ import annotations

from fgvc.cli.flags import (SHARED, add_backend, add_batch_size, add_checkpoint, add_device, add_model_source_arguments,
                            add_new_run_arguments, add_output, add_run_arguments, add_set, add_split, add_threads,
                            add_weights, require_at_least)
from fgvc.cli.runs import load_run, model_source, run_logged, split_of, trained_target
from fgvc.cli.wrapper import command, disk_error, exit_codes_text, friendly, worker_error

__all__ = ["SHARED", "add_backend", "add_batch_size", "add_checkpoint", "add_device", "add_model_source_arguments",
           "add_new_run_arguments", "add_output", "add_run_arguments", "add_set", "add_split", "add_threads",
           "add_weights", "load_run", "model_source", "run_logged", "split_of", "trained_target", "disk_error",
           "exit_codes_text", "command", "friendly", "worker_error", "require_at_least"]
