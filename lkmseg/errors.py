"""The errors lkmseg reports without a traceback, and their exit codes.

Exit codes (README, "Errors and exit codes"): 0 done; 1 a bug (Python traceback: please report it);
2 bad input — a missing or corrupt file, a wrong option, no GPU, a missing optional
dependency (``UserError``); 3 a quality gate failed — export parity, INT8 accuracy, an engine
build (``GateFailed``); the files were written and the report says which figure missed;
4 a training process stopped because another one failed (``PeerFailed``: the launcher reports
the process that failed first, with that one's code); 5 ``lkmseg serve``'s Triton Inference
Server exited on its own while serving (``ServerDied``: killed, out of memory, crashed; its log
says which); 130 interrupted (Ctrl-C) before the work was done.
"""

from __future__ import annotations

EXIT_BUG, EXIT_BAD_INPUT, EXIT_GATE, EXIT_PEER, EXIT_SERVER_DIED = 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by SIGINT (128 + 2)


class LkmsegError(Exception):
    """An expected failure: the CLI prints ``error: <message>`` (one line) and exits with
    ``exit_code``. Never raise it for a programming error: let those show a traceback."""

    exit_code = EXIT_BUG


class UserError(LkmsegError):
    """Bad input, a bad option, or a missing optional dependency/device.

    The message must name the culprit (file, option) and the fix, in one line.
    """

    exit_code = EXIT_BAD_INPUT


class GateFailed(LkmsegError):
    """A quality gate failed (parity, INT8 accuracy, TensorRT build): the output files are
    kept for inspection, the message names the figure that missed and the report file."""

    exit_code = EXIT_GATE


class PeerFailed(LkmsegError):
    """Another training process failed (and reports why itself); this one stops quietly."""

    exit_code = EXIT_PEER


class ServerDied(LkmsegError):
    """The inference server lkmseg started exited on its own while serving (not a bug of
    lkmseg: a kill, the out-of-memory killer or a crash of the server; its log says which)."""

    exit_code = EXIT_SERVER_DIED
