"""Report tables as files a spreadsheet opens: CSV (UTF-8 with BOM) and formatted XLSX.

XlsxWriter writes the workbook: it only writes (which is all a download needs), has no
dependencies, and in ``constant_memory`` mode streams rows to disk, so a 10,000-interval
report costs no more memory than a small one. Every text cell is written with
``write_string``, which makes it a string cell that Excel never evaluates; CSV cells starting
with a formula character get a leading ``'`` as in ``export.py`` (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from cdrhub.reports.csvsql import FORMULA_START
from cdrhub.reports.planning import KIND_OF

#: Media types of the report downloads.
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
Sheet = tuple[str, list[str], list[list[Any]]]

_NUMBER_FORMATS = {
    "count": "#,##0",
    "seconds": "#,##0.0",
    "ratio": "0.0%",
    "erlangs": "0.00",
    "minutes": "0",
}


def _neutral(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def to_csv(header: Sequence[str], rows: Sequence[Sequence[Any]], *, bom: bool = True) -> bytes:
    """One table as CSV: null as an empty cell, numbers as Python writes them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            ["" if v is None else _neutral(v) if isinstance(v, str) else v for v in row]
        )
    return ("\ufeff" if bom else "").encode() + out.getvalue().encode("utf-8")


def to_xlsx(sheets: Sequence[Sheet]) -> bytes:
    """A workbook with one sheet per ``(title, header, rows)``: bold frozen header row, an
    autofilter, number formats by column (counts, seconds, percentages) and widths that fit."""
    out = io.BytesIO()
    import xlsxwriter  # here, not at import: 10 MB that only a spreadsheet download needs

    book = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_formulas": False,
                                     "strings_to_urls": False})  # fmt: skip
    bold = book.add_format({"bold": True, "bottom": 1, "bg_color": "#EEF2F7"})
    formats = {kind: book.add_format({"num_format": f}) for kind, f in _NUMBER_FORMATS.items()}
    for title, header, rows in sheets:
        sheet = book.add_worksheet(title[:31])
        widths = [len(h) + 2 for h in header]
        for col, name in enumerate(header):
            sheet.write_string(0, col, name, bold)
        for r, row in enumerate(rows, start=1):
            for col, value in enumerate(row):
                if value is None:
                    continue
                if isinstance(value, str):
                    sheet.write_string(r, col, value)
                    widths[col] = max(widths[col], min(len(value) + 2, 60))
                elif isinstance(value, bool):
                    sheet.write_boolean(r, col, value)
                else:
                    fmt = formats.get(KIND_OF.get(header[col], ""))
                    sheet.write_number(r, col, value, fmt)
                    widths[col] = max(widths[col], 10)
        for col, width in enumerate(widths):
            sheet.set_column(col, col, width)
        sheet.freeze_panes(1, 0)
        sheet.autofilter(0, 0, max(len(rows), 1), max(len(header) - 1, 0))
    book.close()
    return out.getvalue()
