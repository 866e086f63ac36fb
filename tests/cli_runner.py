"""The command line run in process, as the tests call it."""

from hbflow._cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``hbflow *argv`` in this process: (exit status, stdout, stderr).

    argparse's own usage errors (a non-integer ``--order``, …) end in `SystemExit`; its code is
    the exit status a shell would see.
    """
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err
