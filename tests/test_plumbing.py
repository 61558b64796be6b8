"""The run plumbing (flag and file checks, saving and loading, checkpoints, the run folder, the NaN stop, Ctrl-C) is one
text, copied into every algorithm file after its story: a fix made in one copy and forgotten in another fails here."""

import difflib
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BANNER = "# RUN PLUMBING: the same in every script; nothing here changes the numbers\n"
FILES = ["fql.py", "fino.py", "rldt.py", "fm_irl.py"]  # every algorithm file that carries the section


def plumbing_section(name: str) -> str:
    with open(os.path.join(ROOT, name)) as f:
        text = f.read()
    assert text.count(BANNER) == 1, f"{name}: the banner must appear exactly once"
    return BANNER + text.split(BANNER)[1]


def test_every_algorithm_file_carries_the_same_plumbing_section():
    reference = plumbing_section(FILES[0])
    for name in FILES[1:]:
        diff = "".join(
            difflib.unified_diff(reference.splitlines(True), plumbing_section(name).splitlines(True), FILES[0], name)
        )
        assert not diff, f"the plumbing of {name} differs from that of {FILES[0]}; make them the same:\n{diff}"


def test_the_section_ends_the_file_and_holds_no_method_code():
    """The story ends at the banner: after it, only plumbing and the `__main__` call of the story's `main`."""
    section = plumbing_section(FILES[0])
    assert section.rstrip().endswith('if __name__ == "__main__":\n    main(tyro.cli(Args))')
    for method_word in ("jax.grad", "optax.", "lax.scan"):
        assert method_word not in section, method_word


def test_a_ctrl_c_during_an_atomic_write_is_handled_once_the_file_is_whole(tmp_path, monkeypatch):
    """The run's Ctrl-C handler (SystemExit 130) runs after the rename, not inside the write; no .tmp is left."""
    import signal

    import fql

    def stop(signum, frame):
        raise SystemExit(130)

    real_replace = os.replace

    def replace_during_ctrl_c(source, target):
        signal.raise_signal(signal.SIGINT)  # its handler runs at Python's next check, inside the write
        real_replace(source, target)

    previous = signal.signal(signal.SIGINT, stop)
    monkeypatch.setattr(os, "replace", replace_during_ctrl_c)
    path = str(tmp_path / "args.json")
    try:
        try:
            fql.write_atomically(path, b"x" * 100_000)
            raise AssertionError("the Ctrl-C was lost")
        except SystemExit as stopped:
            assert stopped.code == 130 and signal.getsignal(signal.SIGINT) is stop  # the run's handler is back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert open(path, "rb").read() == b"x" * 100_000 and os.listdir(tmp_path) == ["args.json"]


def test_a_ctrl_c_handled_inside_a_finaliser_still_ends_the_run():
    """Python ignores an exception raised in a finaliser (`__del__`, such as a progress bar's); a Ctrl-C whose handler
    runs there must still end the run with status 130 and one line, not let it go on."""
    import subprocess
    import sys

    program = (
        "import signal, fql\n"
        "class Finalised:\n"
        "    def __del__(self):\n"
        "        signal.raise_signal(signal.SIGINT)  # the handler runs here, inside the finaliser\n"
        "fql.on_ctrl_c(None)\n"
        "Finalised()\n"
        "print('the run went on')\n"
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 130, result.stderr
    assert "the run went on" not in result.stdout and "Exception ignored" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line] == ["interrupted: nothing was written"]
