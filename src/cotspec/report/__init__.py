"""The report of a `cotspec run`: what specialization bought and what it cost.

    from cotspec.report import write_report, write_model_card
    write_report(Path("runs/demo-cpu"))                          # -> runs/demo-cpu/report/report.html
    write_report([Path("runs/a"), Path("runs/b")], out=Path("runs/scaling-report"))
    write_model_card(Path("runs/demo-cpu"))                      # -> runs/demo-cpu/model/README.md

Modules: `collect` reads a run directory into dataclasses; `tables` builds Table 1 and the other
tables; `plots` draws the PNGs (matplotlib, Agg); `document` renders the same content to Markdown and to
one self-contained HTML page; `model_card` writes the selected model's README.md.
"""

from __future__ import annotations

from .build import REPORT_HTML, REPORT_MD, write_report
from .model_card import write_model_card

__all__ = ["REPORT_HTML", "REPORT_MD", "write_model_card", "write_report"]
