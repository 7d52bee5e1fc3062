"""Reviewers: tokens (stored hashed), roles, rotation, removal; and `gapfill reviewer`."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from generator import reviewers
from generator.errors import ConfigError
from generator.reviewers import Role
from tests.factories import cli_env, run_cli


def test_a_new_reviewer_signs_in_with_the_token_and_the_file_holds_only_its_hash(
    tmp_path: Path,
) -> None:
    token = reviewers.add(tmp_path, "alice")
    assert reviewers.who(tmp_path, token) == "alice"
    assert reviewers.who(tmp_path, f"  {token}\n") == "alice", "pasted with blanks"
    assert reviewers.who(tmp_path, token[:-1]) is None
    text = (tmp_path / "reviewers.json").read_text()
    assert token not in text
    assert json.loads(text) == {"alice": {"hash": reviewers.token_hash(token), "role": "reviewer"}}
    assert stat.S_IMODE((tmp_path / "reviewers.json").stat().st_mode) == 0o600


def test_an_admin_keeps_its_role_and_a_role_can_change_without_a_new_token(
    tmp_path: Path,
) -> None:
    token = reviewers.add(tmp_path, "alice", Role.ADMIN)
    signed_in = reviewers.token_hash(token)
    assert reviewers.role_now(tmp_path, "alice", signed_in) is Role.ADMIN
    reviewers.set_role(tmp_path, "alice", Role.REVIEWER)
    assert reviewers.role_now(tmp_path, "alice", signed_in) is Role.REVIEWER
    assert reviewers.who(tmp_path, token) == "alice"


def test_adding_a_reviewer_again_rotates_the_token_and_ends_the_old_one(tmp_path: Path) -> None:
    old = reviewers.add(tmp_path, "bob")
    old_hash = reviewers.token_hash(old)
    new = reviewers.add(tmp_path, "bob", Role.ADMIN)
    assert reviewers.who(tmp_path, old) is None
    assert reviewers.who(tmp_path, new) == "bob"
    assert reviewers.role_now(tmp_path, "bob", old_hash) is None, "its sessions end"
    assert reviewers.role_now(tmp_path, "bob", reviewers.token_hash(new)) is Role.ADMIN


def test_a_removed_reviewer_cannot_sign_in_and_an_unknown_one_is_a_clear_error(
    tmp_path: Path,
) -> None:
    token = reviewers.add(tmp_path, "bob")
    reviewers.add(tmp_path, "carol")
    reviewers.remove(tmp_path, "bob")
    assert reviewers.who(tmp_path, token) is None
    assert reviewers.role_now(tmp_path, "bob", reviewers.token_hash(token)) is None
    assert list(reviewers.load(tmp_path)) == ["carol"]
    with pytest.raises(ConfigError, match="no reviewer named 'bob'"):
        reviewers.remove(tmp_path, "bob")
    with pytest.raises(ConfigError, match="no reviewer named 'dave'"):
        reviewers.set_role(tmp_path, "dave", Role.ADMIN)


def test_the_first_form_of_the_file_still_reads_every_name_as_a_reviewer(tmp_path: Path) -> None:
    token = "a-token-of-the-old-days"
    (tmp_path / "reviewers.json").write_text(json.dumps({"alice": reviewers.token_hash(token)}))
    assert reviewers.load(tmp_path)["alice"].role is Role.REVIEWER
    assert reviewers.who(tmp_path, token) == "alice"
    reviewers.add(tmp_path, "bob", Role.ADMIN)  # rewritten in the new form, alice kept
    assert json.loads((tmp_path / "reviewers.json").read_text())["alice"] == {
        "hash": reviewers.token_hash(token),
        "role": "reviewer",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "expected an object"),
        ("{", "not valid JSON"),
        ('{"alice": {"hash": "h", "role": "owner"}}', "reviewer 'alice': role: Input should be"),
        ('{"alice": {"role": "admin"}}', "reviewer 'alice': hash: Field required"),
    ],
)
def test_a_malformed_file_is_one_error_naming_the_file_and_the_reviewer(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "reviewers.json").write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        reviewers.load(tmp_path)
    assert str(caught.value).startswith(str(tmp_path / "reviewers.json"))


def test_a_change_made_by_another_process_is_seen_at_the_next_read(tmp_path: Path) -> None:
    token = reviewers.add(tmp_path, "alice", Role.ADMIN)
    assert reviewers.role_now(tmp_path, "alice", reviewers.token_hash(token)) is Role.ADMIN
    # Written in place (same inode), as an editor might, not through add(): the cache notices.
    (tmp_path / "reviewers.json").write_text(json.dumps({"bob": "0" * 64}))
    assert reviewers.role_now(tmp_path, "alice", reviewers.token_hash(token)) is None


def test_reviewers_added_at_the_same_time_are_all_kept(tmp_path: Path) -> None:
    names = [f"r{i}" for i in range(16)]
    threads = [threading.Thread(target=reviewers.add, args=(tmp_path, n)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(reviewers.load(tmp_path)) == sorted(names)


def test_an_oidc_users_role_is_the_one_written_under_their_e_mail(tmp_path: Path) -> None:
    reviewers.add(tmp_path, "Ann@Example.com", Role.ADMIN)
    assert reviewers.role_of_email(tmp_path, "ann@example.com") is Role.ADMIN
    assert reviewers.role_of_email(tmp_path, "bob@example.com") is Role.REVIEWER


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, str(Path("..", "etc")), "a/b", "<script>"])
def test_a_name_outside_the_plain_alphabet_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="reviewer name"):
        reviewers.add(tmp_path, name)


# -- gapfill reviewer --------------------------------------------------------------------------


def test_the_cli_adds_lists_changes_and_removes_reviewers_and_never_prints_a_hash(
    tmp_path: Path,
) -> None:
    env = cli_env(GAPFILL_DATA_DIR=str(tmp_path))
    added = run_cli(env, "reviewer", "add", "alice", "--role", "admin")
    assert added.returncode == 0, added.stderr
    assert "reviewer 'alice' (admin): token " in added.stdout
    run_cli(env, "reviewer", "add", "bob")
    again = run_cli(env, "reviewer", "add", "bob")
    assert "old token no longer works" in again.stdout
    assert run_cli(env, "reviewer", "role", "bob", "admin").returncode == 0
    listed = run_cli(env, "reviewer", "list")
    assert listed.stdout.split() == ["alice", "admin", "bob", "admin"]
    hashes = [e.hash for e in reviewers.load(tmp_path).values()]
    assert not any(h in listed.stdout for h in hashes)
    assert run_cli(env, "reviewer", "remove", "bob").returncode == 0
    assert run_cli(env, "reviewer", "list").stdout.split() == ["alice", "admin"]


def test_removing_an_unknown_reviewer_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = cli_env(GAPFILL_DATA_DIR=str(tmp_path))
    result = run_cli(env, "reviewer", "remove", "nobody")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: no reviewer named 'nobody' (gapfill reviewer list shows them)"
    ]


def test_an_unknown_role_is_a_usage_error_listing_the_roles(tmp_path: Path) -> None:
    env = cli_env(GAPFILL_DATA_DIR=str(tmp_path))
    result = run_cli(env, "reviewer", "add", "alice", "--role", "owner")
    assert result.returncode == 2
    assert "reviewer" in result.stderr and "admin" in result.stderr
    assert not (tmp_path / "reviewers.json").exists()
