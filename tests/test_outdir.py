"""The output folder under races and odd paths: one lock per destination, a re-check at the rename,
literal names, deliberate symlink handling, and nothing deleted that remap did not write."""

from __future__ import annotations

import errno
import gc
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from remap.errors import OutputError
from remap.io import atomic, outdir, outlock
from remap.io.outdir import check_destination, hold, rename_noreplace, write_folder
from tests.conftest import EXAMPLE, ROOT, RULES

DEAD = 2**22 + 12345  # above the largest pid_max: no process has it
ANOTHER = "another remap is writing this output folder"


def own_fill(tmp: Path) -> None:
    (tmp / "config.json").write_text("{}")
    (tmp / "model.safetensors").write_bytes(b"new")


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def existing_output(out: Path) -> None:
    out.mkdir(parents=True)
    (out / "config.json").write_text("old")
    (out / "model.safetensors").write_bytes(b"old")


def then(*steps: Callable[[Path], object]) -> Callable[[Path], None]:
    """A fill that writes remap's files, then runs ``steps`` (the race) on the temporary folder."""
    def fill(tmp: Path) -> None:
        own_fill(tmp)
        for step in steps:
            step(tmp)
    return fill


class TestOutputRecheckedAtTheRename:
    """The destination is checked early; the rename checks it again, under the lock."""

    def test_a_folder_with_a_users_file_that_appears_meanwhile_is_kept_without_force(self, tmp_path: Path) -> None:
        out = tmp_path / "model"

        def user_writes(_: Path) -> None:
            out.mkdir()
            (out / "notes.txt").write_text("mine")

        with pytest.raises(OutputError, match="appeared while remap was converting; nothing was replaced"):
            write_folder(out, False, then(user_writes))
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
        assert hidden(tmp_path) == []

    def test_an_empty_folder_that_appears_meanwhile_is_not_replaced_without_force(self, tmp_path: Path) -> None:
        out = tmp_path / "model"
        with pytest.raises(OutputError, match="appeared while remap was converting"):
            write_folder(out, False, then(lambda _: out.mkdir()))
        assert out.is_dir() and list(out.iterdir()) == [] and hidden(tmp_path) == []

    def test_force_does_not_replace_a_folder_that_gained_a_users_file(self, tmp_path: Path) -> None:
        out = tmp_path / "model"
        existing_output(out)
        with pytest.raises(OutputError, match=r"files remap did not write \(notes.txt\)"):
            write_folder(out, True, then(lambda _: (out / "notes.txt").write_text("mine")))
        assert (out / "notes.txt").read_text() == "mine" and (out / "config.json").read_text() == "old"
        assert hidden(tmp_path) == []

    def test_force_over_a_folder_that_did_not_exist_still_checks_what_appeared(self, tmp_path: Path) -> None:
        out = tmp_path / "model"

        def user_writes(_: Path) -> None:
            out.mkdir()
            (out / "notes.txt").write_text("mine")

        with pytest.raises(OutputError, match=r"files remap did not write \(notes.txt\)"):
            write_folder(out, True, then(user_writes))
        assert (out / "notes.txt").read_text() == "mine" and hidden(tmp_path) == []

    def test_force_replaces_remaps_own_output_and_leaves_nothing_aside(self, tmp_path: Path) -> None:
        out = tmp_path / "model"
        existing_output(out)
        write_folder(out, True, own_fill)
        assert (out / "model.safetensors").read_bytes() == b"new" and hidden(tmp_path) == []

    def test_entries_that_only_look_like_remaps_files_are_foreign(self, tmp_path: Path) -> None:
        out = tmp_path / "model"
        out.mkdir()
        (out / "config.json").mkdir()
        (out / "config.json" / "inside.txt").write_text("mine")
        (tmp_path / "victim").write_text("mine")
        (out / "model.safetensors").symlink_to(tmp_path / "victim")
        with pytest.raises(OutputError, match=r"did not write \(config.json, model.safetensors\)"):
            check_destination(out, True)
        assert (out / "config.json" / "inside.txt").exists() and (out / "model.safetensors").is_symlink()

    def test_a_file_added_between_the_last_check_and_the_swap_is_put_back(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        out = tmp_path / "model"
        existing_output(out)
        real_check = outdir._check

        def check_then_race(out_dir: Path, force: bool, source: Path | None, *, late: bool) -> None:
            real_check(out_dir, force, source, late=late)
            if late:
                (out / "notes.txt").write_text("mine")

        monkeypatch.setattr(outdir, "_check", check_then_race)
        with pytest.raises(OutputError, match=r"did not write \(notes.txt\)"):
            write_folder(out, True, own_fill)
        assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "notes.txt"]
        assert (out / "config.json").read_text() == "old" and hidden(tmp_path) == []

    def test_a_folder_that_appears_at_the_very_last_moment_is_not_replaced(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        out = tmp_path / "model"
        real_check = outdir._check

        def check_then_race(out_dir: Path, force: bool, source: Path | None, *, late: bool) -> None:
            real_check(out_dir, force, source, late=late)
            if late:
                out.mkdir()  # empty: a plain rename(2) would silently replace it

        monkeypatch.setattr(outdir, "_check", check_then_race)
        with pytest.raises(OutputError, match="appeared at the last moment; nothing was replaced"):
            write_folder(out, False, own_fill)
        assert out.is_dir() and list(out.iterdir()) == [] and hidden(tmp_path) == []

    @pytest.mark.parametrize("kernel", [True, False], ids=["renameat2", "fallback"])
    def test_rename_noreplace_never_replaces(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             kernel: bool) -> None:
        if not kernel:
            monkeypatch.setattr(atomic, "_renameat2", lambda: None)
        (tmp_path / "src").mkdir()
        (tmp_path / "empty").mkdir()
        (tmp_path / "file").write_text("x")
        for dst in ("empty", "file"):
            with pytest.raises(FileExistsError):
                rename_noreplace(tmp_path / "src", tmp_path / dst)
        rename_noreplace(tmp_path / "src", tmp_path / "new")
        assert (tmp_path / "new").is_dir() and not (tmp_path / "src").exists()

    def test_a_failed_swap_puts_the_previous_output_back(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        out = tmp_path / "model"
        existing_output(out)
        real = outdir.rename_noreplace

        def failing(src: Path, dst: Path) -> None:
            if src.name.startswith(".model.remap-") and not src.name.endswith("-old"):
                raise OSError(errno.EIO, "Input/output error")
            real(src, dst)

        monkeypatch.setattr(outdir, "rename_noreplace", failing)
        with pytest.raises(OutputError, match="writing failed: Input/output error"):
            write_folder(out, True, own_fill)
        assert (out / "config.json").read_text() == "old" and hidden(tmp_path) == []

    def test_a_users_file_dropped_into_the_replaced_folder_during_the_swap_is_kept(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        out = tmp_path / "model"
        existing_output(out)
        real = outdir.rename_noreplace

        def racing(src: Path, dst: Path) -> None:
            if dst == out and src.name.endswith(tuple("0123456789abcdef")):  # the new output going in
                old = next(p for p in tmp_path.iterdir() if p.name.endswith("-old"))
                (old / "notes.txt").write_text("mine")
            real(src, dst)

        monkeypatch.setattr(outdir, "rename_noreplace", racing)
        with pytest.raises(OutputError, match="the new output is in place, but files appeared"):
            write_folder(out, True, own_fill)
        assert (out / "model.safetensors").read_bytes() == b"new"
        [old] = [tmp_path / n for n in hidden(tmp_path)]
        assert (old / "notes.txt").read_text() == "mine" and (old / "config.json").read_text() == "old"


class TestOutputLock:
    """One writer per destination: a second one fails at once, in one line."""

    def test_a_second_writer_fails_at_once_while_the_first_holds_the_lock(self, tmp_path: Path) -> None:
        out = tmp_path / "model"
        with hold(out, False) as first:
            with pytest.raises(OutputError) as caught:
                write_folder(out, False, own_fill)
            assert str(caught.value) == (f"{out}: {ANOTHER} (pid {os.getpid()}); wait for it to finish, or stop it")
            with pytest.raises(OutputError, match=ANOTHER):
                check_destination(out, True)
            first.write(own_fill)
        assert (out / "config.json").exists() and hidden(tmp_path) == []
        write_folder(tmp_path / "other", False, own_fill)  # other destinations are not locked

    def test_two_conversions_to_one_destination_do_not_both_succeed(self, tmp_path: Path) -> None:
        out = tmp_path / "model"

        def fill_while_another_writes(tmp: Path) -> None:
            own_fill(tmp)
            write_folder(out, False, own_fill)  # a second conversion starts meanwhile

        with pytest.raises(OutputError, match=ANOTHER):
            write_folder(out, False, fill_while_another_writes)
        assert not out.exists() and hidden(tmp_path) == []

    def test_the_cli_refuses_in_one_line_while_another_process_writes(self, tmp_path: Path) -> None:
        out = tmp_path / "model"
        with hold(out, False):
            proc = subprocess.run([sys.executable, "-m", "remap", "apply", str(RULES), str(EXAMPLE), "-o", str(out)],
                                  capture_output=True, text=True, check=False, cwd=ROOT)
        assert (proc.returncode, proc.stderr) == (
            1, f"error: {out}: {ANOTHER} (pid {os.getpid()}); wait for it to finish, or stop it\n")
        assert not out.exists() and hidden(tmp_path) == []

    def test_the_lock_of_a_killed_holder_is_reused_and_removed(self, tmp_path: Path) -> None:
        out = tmp_path / "a" / "model"
        code = ("import sys, time\nfrom remap.io.outdir import hold\n"
                f"with hold({str(out)!r}, False):\n    print('ready', flush=True)\n    time.sleep(120)\n")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            with pytest.raises(OutputError, match=rf"{ANOTHER} \(pid {proc.pid}\)"):
                check_destination(out, False)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert hidden(out.parent) == [".model.remap-lock"]  # what a SIGKILL leaves
        write_folder(out, False, own_fill)
        assert hidden(out.parent) == [] and (out / "config.json").exists()

    def test_a_lock_file_removed_under_a_late_locker_is_not_trusted(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        out = tmp_path / "model"
        path = outlock.lock_path(out)
        calls: list[int] = []
        real = outlock._flock_function(out)

        def flock(fd: int) -> None:
            if not calls:  # the previous holder finishes (unlinks) and a third run creates a new file
                path.unlink()
                path.write_text("")
            calls.append(fd)
            real(fd)

        monkeypatch.setattr(outlock, "_flock_function", lambda out_dir: flock)
        lock = outlock.acquire(out, lambda: None)
        try:
            assert len(calls) == 2 and outlock._names(calls[1], path)
            assert path.read_text() == f"{os.getpid()}\n"
        finally:
            lock.release()
        assert not path.exists()

    def test_unsupported_locking_is_one_line(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def flock(fd: int) -> None:
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

        monkeypatch.setattr(outlock, "_flock_function", lambda out_dir: flock)
        out = tmp_path / "x" / "model"
        with pytest.raises(OutputError, match=r"does not support file locking .*; choose a folder on a local disk"):
            write_folder(out, False, own_fill)
        assert list(tmp_path.iterdir()) == []

    def test_a_planted_lock_symlink_is_refused_and_its_target_untouched(self, tmp_path: Path) -> None:
        (tmp_path / "victim.txt").write_text("keep me")
        (tmp_path / ".model.remap-lock").symlink_to(tmp_path / "victim.txt")
        with pytest.raises(OutputError, match=r"\.model\.remap-lock is not remap's lock file; remove it"):
            write_folder(tmp_path / "model", False, own_fill)
        assert (tmp_path / "victim.txt").read_text() == "keep me" and (tmp_path / ".model.remap-lock").is_symlink()


class TestOutputSymlinks:
    """A symlinked destination is refused, with or without --force, and left as it is."""

    @pytest.mark.parametrize("force", [True, False])
    def test_a_symlinked_destination_is_refused_and_left_as_it_is(self, tmp_path: Path, force: bool) -> None:
        real = tmp_path / "real"
        existing_output(real)
        (tmp_path / "model").symlink_to(real)
        with pytest.raises(OutputError, match=rf"is a symbolic link \(to {real}\); give the folder it points to"):
            write_folder(tmp_path / "model", force, own_fill)
        assert (tmp_path / "model").is_symlink() and (real / "config.json").read_text() == "old"
        assert hidden(tmp_path) == []

    def test_a_dangling_symlink_destination_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "model").symlink_to(tmp_path / "nowhere")
        with pytest.raises(OutputError, match="is a symbolic link"):
            write_folder(tmp_path / "model", True, own_fill)
        assert (tmp_path / "model").is_symlink() and not (tmp_path / "nowhere").exists() and hidden(tmp_path) == []

    def test_a_symlink_that_replaces_the_destination_meanwhile_is_refused(self, tmp_path: Path) -> None:
        out = tmp_path / "model"
        existing_output(out)
        (tmp_path / "elsewhere").mkdir()

        def swap_in_a_link(_: Path) -> None:
            out.rename(tmp_path / "moved")
            out.symlink_to(tmp_path / "elsewhere")

        with pytest.raises(OutputError, match="is a symbolic link"):
            write_folder(out, True, then(swap_in_a_link))
        assert out.is_symlink() and (tmp_path / "moved" / "config.json").exists() and hidden(tmp_path) == []


class TestOutputNames:
    """``-o`` is literal: no glob anywhere."""

    @pytest.mark.parametrize(("name", "sibling"), [("out[1]", "out1"), ("out*", "outX"), ("out?", "outY"),
                                                   ("a", "a.remap-4206649-x"), ("[!x]", "y")])
    def test_output_names_are_literal_and_other_destinations_leftovers_are_untouched(
            self, tmp_path: Path, name: str, sibling: str) -> None:
        existing_output(tmp_path / sibling)
        aside = tmp_path / f".{sibling}.remap-{DEAD}-old"  # a killed --force run of the sibling
        existing_output(aside)
        temp = tmp_path / f".{sibling}.remap-{DEAD}-abcdefgh"  # a killed run's temporary folder
        existing_output(temp)
        write_folder(tmp_path / name, False, own_fill)
        assert (tmp_path / name / "model.safetensors").read_bytes() == b"new"
        for folder in (tmp_path / sibling, aside, temp):
            assert (folder / "config.json").read_text() == "old"
        assert hidden(tmp_path) == sorted([aside.name, temp.name])


class TestOutputLeftovers:
    """Leftovers of killed runs of this destination (and only this one)."""

    def test_a_killed_runs_temporary_folder_is_removed(self, tmp_path: Path) -> None:
        existing_output(tmp_path / f".model.remap-{DEAD}-abcdefgh")
        (tmp_path / ".model.remap-lock").write_text(f"{DEAD}\n")
        write_folder(tmp_path / "model", False, own_fill)
        assert hidden(tmp_path) == []

    def test_a_previous_output_moved_aside_is_put_back_first(self, tmp_path: Path) -> None:
        existing_output(tmp_path / f".model.remap-{DEAD}-old")
        with pytest.raises(OutputError, match="already exists"):
            check_destination(tmp_path / "model", False)
        assert (tmp_path / "model" / "config.json").read_text() == "old" and hidden(tmp_path) == []

    def test_a_moved_aside_output_is_discarded_only_when_it_holds_nothing_else(self, tmp_path: Path) -> None:
        out = tmp_path / "model"
        existing_output(out)
        plain, mixed = tmp_path / f".model.remap-{DEAD}-old", tmp_path / f".model.remap-{DEAD + 1}-old"
        existing_output(plain)
        existing_output(mixed)
        (mixed / "notes.txt").write_text("mine")
        write_folder(out, True, own_fill)
        assert not plain.exists()
        assert sorted(p.name for p in mixed.iterdir()) == ["config.json", "model.safetensors", "notes.txt"]

    def test_leftovers_of_a_live_process_are_kept_but_a_reused_own_pid_is_not(self, tmp_path: Path) -> None:
        live = tmp_path / f".model.remap-{os.getppid()}-abcdefgh"
        mine = tmp_path / f".model.remap-{os.getpid()}-old"
        existing_output(live)
        existing_output(mine)
        with pytest.raises(OutputError, match="already exists"):
            check_destination(tmp_path / "model", False)  # puts `mine` back first: this process made none yet
        assert live.exists() and (tmp_path / "model" / "config.json").exists() and not mine.exists()


class TestOutputCleanup:
    """Failure and interruption leave nothing."""

    @pytest.mark.parametrize("error", [OSError(errno.EIO, "Input/output error"), KeyboardInterrupt()],
                             ids=["oserror", "sigterm"])
    def test_failure_leaves_nothing_not_even_the_parents_remap_made(self, tmp_path: Path, error: BaseException) -> None:
        def fail(tmp: Path) -> None:
            own_fill(tmp)
            raise error

        with pytest.raises(type(error)):
            write_folder(tmp_path / "a" / "b" / "model", False, fail)
        assert list(tmp_path.iterdir()) == []

    def test_an_interrupt_at_the_very_start_of_exit_still_leaves_nothing(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def interrupted(self: outdir.Output, *exc: object) -> None:
            raise KeyboardInterrupt  # where a SIGTERM lands before any clean-up code runs

        monkeypatch.setattr(outdir.Output, "__exit__", interrupted)

        def fill(tmp: Path) -> None:
            own_fill(tmp)
            raise OSError(errno.EIO, "Input/output error")

        with pytest.raises(KeyboardInterrupt):
            write_folder(tmp_path / "a" / "model", False, fill)
        gc.collect()  # the Output is dropped once the exception is handled
        assert list(tmp_path.iterdir()) == []

    def test_leaving_a_hold_without_writing_leaves_nothing(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError), hold(tmp_path / "a" / "model", False) as output:
            assert (tmp_path / "a" / ".model.remap-lock").exists()
            assert output.out_dir == tmp_path / "a" / "model"
            raise ValueError("the checkpoint could not be read")
        assert list(tmp_path.iterdir()) == []

    def test_success_keeps_the_parents_and_removes_the_lock(self, tmp_path: Path) -> None:
        write_folder(tmp_path / "a" / "b" / "model", False, own_fill)
        assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["model"]


class TestOutputApi:
    """hold(), check_destination() and write_folder()."""

    def test_hold_rechecks_once_the_source_is_known_and_writes_once(self, tmp_path: Path) -> None:
        out = tmp_path / "model"
        existing_output(out)
        (out / "model.safetensors").write_bytes(b"checkpoint")
        with hold(out, True) as output:
            with pytest.raises(OutputError, match="contains the source checkpoint"):
                output.check(out / "model.safetensors")
            with pytest.raises(OutputError, match="contains the source checkpoint"):
                output.write(own_fill)
            assert (out / "model.safetensors").read_bytes() == b"checkpoint" and hidden(tmp_path) == [
                ".model.remap-lock"]
        with hold(tmp_path / "other", False) as output:
            output.write(own_fill)
            with pytest.raises(RuntimeError, match="once per hold"):
                output.write(own_fill)
        with pytest.raises(RuntimeError, match="inside `with hold"):
            output.write(own_fill)

    @pytest.mark.parametrize("name", [".", "..", ""])
    def test_a_destination_must_name_a_folder(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        monkeypatch.chdir(tmp_path / "..")
        with pytest.raises(OutputError, match=r"must name a folder \(not '\.' or '\.\.'\)"):
            check_destination(Path(name), True)

    def test_a_file_as_destination(self, tmp_path: Path) -> None:
        (tmp_path / "model").write_text("x")
        with pytest.raises(OutputError, match="already exists; pass --force"):
            check_destination(tmp_path / "model", False)
        with pytest.raises(OutputError, match="exists and is not a folder"):
            check_destination(tmp_path / "model", True)
        with pytest.raises(OutputError, match=f"{tmp_path / 'model'} is not a folder"):
            check_destination(tmp_path / "model" / "sub", False)
        assert hidden(tmp_path) == []
