"""The resumable-stage mechanism shared by the demo and the studies: a stage runs once, then is skipped."""
from tokenbound.artifacts import write_json
from tokenbound.stages import Stages, done


def test_a_stage_runs_until_its_artifact_exists_then_is_skipped(tmp_path, capsys):
    stages = Stages("job")
    calls = []
    cert = tmp_path / "c.json"

    def make() -> None:
        calls.append(1)
        write_json(cert, {"x": 1})

    assert stages.run("bound", cert, make) is True
    assert stages.run("bound", cert, make) is False
    assert calls == [1] and set(stages.timings) == {"bound"}
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "[job] bound ..." and err[1].startswith("[job] bound: done in ")
    assert err[2] == f"[job] bound: {cert} exists, skipped"


def test_a_directory_is_done_only_with_its_manifest(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "weights.bin").write_bytes(b"half written")
    assert not done(d)
    stages = Stages("job")
    assert stages.run("train", d, lambda: write_json(d / "manifest.json", {"kind": "x"})) is True
    assert done(d) and not done(tmp_path / "missing.json")
    assert stages.run("train", d, lambda: None) is False
