"""A quiet Dagster logger for the command line: step starts and ends, the assets' own INFO lines (progress of
cells done of total, rate, time left) and every warning or error, through Python `logging` to the terminal.

Dagster's default console logger prints every event at DEBUG (a hundred lines per run, then silence while a
model trains); this one is what `geoembed run` configures. `dagster dev` and the UI are unaffected: a run whose
configuration does not name `geoembed_console` uses Dagster's default loggers.
"""

from __future__ import annotations

import logging

import dagster as dg

CLI_LOGGER = "geoembed"  # the logger `geoembed_assets.cli.configure_cli_logging` sets up
_STEP_EVENTS = {"STEP_START": "started", "STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED"}


def summarize_record(record: logging.LogRecord, verbose: bool = False) -> str | None:
    """The line to print for one Dagster log record, or None to drop it.

    Kept: step start/success/failure events, and messages the assets log themselves (INFO and above).
    Dropped: every other Dagster event (handled output, loaded input, ...) unless `verbose`.
    """
    meta = getattr(record, "dagster_meta", None) or {}
    event = meta.get("dagster_event")
    step = meta.get("step_key") or meta.get("job_name") or ""
    message = meta.get("orig_message", record.getMessage())
    if event is None:
        return f"{step}: {message}" if record.levelno >= logging.INFO or verbose else None
    kind = event.event_type_value
    if kind in _STEP_EVENTS:
        line = f"{step}: {_STEP_EVENTS[kind]}"
        duration = getattr(event.event_specific_data, "duration_ms", None)
        if duration is not None:
            line += f" in {duration / 1000:.1f} s"
        if kind == "STEP_FAILURE":
            error = getattr(event.event_specific_data, "error", None)
            line += f": {error.message.strip() if error is not None else message}"
        return line
    if record.levelno >= logging.WARNING or verbose:
        return f"{step}: {message}"
    return None


class _SummaryHandler(logging.Handler):
    def __init__(self, target: logging.Logger, verbose: bool) -> None:
        super().__init__(logging.DEBUG)
        self.target, self.verbose = target, verbose

    def emit(self, record: logging.LogRecord) -> None:
        line = summarize_record(record, self.verbose)
        if line is not None:
            meta = getattr(record, "dagster_meta", None) or {}
            event = meta.get("dagster_event")
            step_line = event is not None and event.event_type_value in _STEP_EVENTS
            self.target.log(max(record.levelno, logging.INFO) if step_line else record.levelno, line)


@dg.logger(
    {"verbose": dg.Field(bool, default_value=False, description="also print Dagster's DEBUG events")},
    description="Step starts/ends, the assets' INFO lines (progress) and warnings, to the `geoembed` logger.",
)
def geoembed_console(init_context: dg.InitLoggerContext) -> logging.Logger:
    verbose = bool(init_context.logger_config["verbose"])
    log = logging.getLogger(f"{CLI_LOGGER}.dagster")
    log.setLevel(logging.DEBUG)
    log.handlers = [_SummaryHandler(logging.getLogger(CLI_LOGGER), verbose)]
    log.propagate = False
    return log
