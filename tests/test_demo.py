"""The demo's fallback download: clear failure offline, refusal of a bad checksum."""

from __future__ import annotations

import urllib.request

import pytest

from facetrain import demo


def test_offline_download_fails_with_a_clear_message(tmp_path, monkeypatch, capsys):
    def offline(*a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(SystemExit) as e:
        demo.download_lfw(tmp_path)
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "cannot download LFW" in err and "offline" in err and "FACETRAIN_DEMO_DATA" in err
    assert not list(tmp_path.glob("*.tgz"))


def test_bad_checksum_is_refused_and_removed(tmp_path, capsys):
    (tmp_path / "lfw.tgz").write_bytes(b"not the real archive")
    with pytest.raises(SystemExit):
        demo.download_lfw(tmp_path)
    assert "expected a17d05bd" in capsys.readouterr().err
    assert not (tmp_path / "lfw.tgz").exists()


def test_demo_data_comes_from_the_environment_first(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRAIN_DEMO_DATA", str(tmp_path))
    assert demo.shared_sample() == tmp_path
