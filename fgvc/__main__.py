"""``fgvc COMMAND ...`` (or ``python -m fgvc COMMAND ...``): one entry point for every command.

``fgvc --help`` lists them; ``fgvc train recipes/demo.yaml`` is ``python -m fgvc.train recipes/demo.yaml`` (and
``fgvc-train``), with the same flags, output and exit codes: this only dispatches to the command's own ``main``.
"""
from __future__ import annotations

import difflib
import importlib
import sys

from fgvc.errors import exit_codes_text

__all__ = ["COMMANDS", "main"]

# name -> one line; each is the module fgvc.<name> with a main(argv) -> int
COMMANDS: dict[str, str] = {
    "train": "train a recipe (or resume a run)",
    "evaluate": "re-evaluate a run: classification, retrieval, knn or linear probe",
    "embed": "write the embeddings of a split to a .npz file",
    "zeroshot": "zero-shot classification with a CLIP model: classes named in words, no training",
    "extend": "add new species to a trained run (weight imprinting, optional fine-tune)",
    "datasets": "fetch, check, audit, cache, convert or describe a data set; make the synthetic set",
    "visualize": "attention maps of a run's predictions in one figure",
    "explain": "class activation maps (Grad-CAM and friends)",
    "project": "2-D map of a run's embeddings coloured by class",
    "predict": "top-k classes for new photos (a run or an exported .onnx)",
    "report": "one self-contained HTML report of a run",
    "export": "export a run to ONNX or TorchScript, parity-checked",
    "quantize": "INT8 ONNX (static and dynamic) with a size / accuracy / latency table",
    "prune": "structured channel pruning, optional fine-tune",
    "serve": "an HTTP API and web page over a run or .onnx, with dynamic batching",
    "ablate": "trick-by-trick ablation table over seeds",
    "bench": "speed tables and runs against published numbers",
}

EXIT_CODES = exit_codes_text()  # the one table of fgvc.errors: 0 ok, 1 a check failed, 2 user error, 130 interrupted


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: fgvc COMMAND [ARGS ...]   (fgvc COMMAND --help for its flags)", "", "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    return "\n".join(lines + ["", EXIT_CODES])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"error: unknown command '{name}'{hint}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(f"fgvc.{name}").main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
