"""The store, on SQLite and on PostgreSQL: migrations, users, queue, idempotent answers."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text

from rlhfkit.labeling import auth
from rlhfkit.labeling.kinds import NewItem
from rlhfkit.labeling.migrate import current
from rlhfkit.labeling.store import Conflict, LabelError, LabelStore, NotFound


def _labeler(store: LabelStore, name: str = "ann"):
    return store.add_user(name, "password123")[0]


def test_open_creates_schema_at_head_and_reopen_keeps_rows(any_url: str) -> None:
    store = LabelStore.open(any_url)
    assert current(store.engine) == "0005"
    assert {"users", "projects", "items", "answers", "assignments", "media", "sessions", "settings"} <= set(
        inspect(store.engine).get_table_names())
    user = _labeler(store)
    store.create_project("p", "pairwise")
    item = store.add_pairwise_item("p", "q", text_a="a", text_b="b")
    store.next_item("p", user)
    store.submit(user, item, "key-00000001", {"choice": "A"})
    secret = store.secret()
    store.close()
    again = LabelStore.open(any_url)  # an upgrade (here: to the same head) keeps every label
    assert again.count_answers() == 1 and again.secret() == secret
    again.close()


def test_models_match_the_migrations(sqlite_url: str) -> None:
    """Alembic's autogenerate finds nothing to add: models.py and migrations/ agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from rlhfkit.labeling.models import Base

    store = LabelStore.open(sqlite_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_mode_with_full_sync(store: LabelStore) -> None:
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_secret_is_random_per_install_and_stored(tmp_path) -> None:
    a, b = LabelStore.open(str(tmp_path / "a.db")), LabelStore.open(str(tmp_path / "b.db"))
    assert a.secret() != b.secret() and len(a.secret()) >= 40
    with a.engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM settings WHERE key='secret_key'")).scalar() == a.secret()


def test_users_passwords_hashed_tokens_hashed_and_disable(any_store: LabelStore) -> None:
    user, token = any_store.add_user("ann", "password123", token=True)
    with any_store.engine.connect() as conn:
        pw_hash, tok_hash = conn.execute(text("SELECT password_hash, token_hash FROM users")).one()
    assert pw_hash.startswith("$argon2id$") and "password123" not in pw_hash
    assert tok_hash == auth.token_hash(token) and token not in tok_hash
    assert any_store.authenticate("ann", "password123") == user
    assert any_store.authenticate("ann", "wrong-password") is None
    assert any_store.authenticate("nobody", "password123") is None
    assert any_store.user_for_token(token) == user
    cookie, _csrf = any_store.create_session(user)
    assert any_store.session_user(cookie)[0] == user
    any_store.set_active("ann", False)
    assert any_store.authenticate("ann", "password123") is None
    assert any_store.user_for_token(token) is None and any_store.session_user(cookie) is None
    with pytest.raises(Conflict):
        any_store.add_user("ann", "password123")
    with pytest.raises(LabelError, match="at least"):
        any_store.add_user("bob", "short")
    with pytest.raises(LabelError, match="role"):
        any_store.add_user("bob", "password123", role="root")


def test_submit_is_idempotent_by_client_key(any_store: LabelStore) -> None:
    user = _labeler(any_store)
    any_store.create_project("r", "ranking")
    item = any_store.add_ranking_item("r", "q", ["a", "b", "c"])
    assert any_store.next_item("r", user).id == item
    first = any_store.submit(user, item, "client-key-1", {"ranks": [2, 0, 0]}, seconds_active=4.0)
    again = any_store.submit(user, item, "client-key-1", {"ranks": [2, 0, 0]}, seconds_active=4.0)
    assert not first.duplicate and again.duplicate and again.answer_id == first.answer_id
    assert any_store.count_answers() == 1
    (answer,) = any_store.answers_for([item])[item]
    assert answer.payload == {"ranks": [1, 0, 0]}  # dense: ties share a rank, gaps closed
    assert answer.labeler == "ann" and answer.seconds_wall >= 0 and answer.seconds_active is not None
    with pytest.raises(Conflict, match="already answered"):
        any_store.submit(user, item, "client-key-2", {"ranks": [0, 1, 2]})


def test_concurrent_retries_of_one_key_store_one_answer(any_store: LabelStore) -> None:
    user = _labeler(any_store)
    any_store.create_project("p", "pairwise")
    item = any_store.add_pairwise_item("p", "q", text_a="a", text_b="b")
    any_store.next_item("p", user)
    results, errors = [], []

    def go() -> None:
        try:
            results.append(any_store.submit(user, item, "same-key-123", {"choice": "B"}))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 8
    assert sum(not r.duplicate for r in results) == 1 and len({r.answer_id for r in results}) == 1
    assert any_store.count_answers() == 1


def test_answers_only_to_assigned_items_and_valid(any_store: LabelStore) -> None:
    ann, bob = _labeler(any_store, "ann"), _labeler(any_store, "bob")
    any_store.create_project("t", "rating")
    item = any_store.add_rating_item("t", "q", "r")
    with pytest.raises(NotFound):
        any_store.submit(ann, item, "key-ann-0001", {"score": 3})  # never served to ann
    any_store.next_item("t", ann)
    with pytest.raises(LabelError, match="Likert"):
        any_store.submit(ann, item, "key-ann-0001", {"score": 9})
    with pytest.raises(LabelError, match="flags"):
        any_store.submit(ann, item, "key-ann-0001", {"score": 3, "flags": ["nonsense"]})
    any_store.submit(ann, item, "key-ann-0001", {"score": 3, "flags": ["moral_judgment"], "notes": "ok"})
    with pytest.raises(Conflict, match="another answer"):  # bob cannot replay ann's key
        any_store.submit(bob, item, "key-ann-0001", {"score": 3})
    with pytest.raises(NotFound):
        any_store.item_for(bob, item)


def test_each_item_goes_to_n_labelers_and_a_labeler_never_twice(any_store: LabelStore) -> None:
    users = [_labeler(any_store, f"u{i}") for i in range(4)]
    any_store.create_project("p", "pairwise", labels_per_item=2)
    ids = [any_store.add_pairwise_item("p", f"q{i}", text_a="a", text_b="b") for i in range(3)]
    seen: dict[int, list[int]] = {i: [] for i in ids}
    for n, u in enumerate(users):
        while (item := any_store.next_item("p", u)) is not None:
            seen[item.id].append(u.id)
            any_store.submit(u, item.id, f"k-{u.id}-{item.id}-xx", {"choice": "A"})
    assert all(len(v) == 2 and len(set(v)) == 2 for v in seen.values())
    assert any_store.count_answers() == 6


def test_open_lease_is_resumed_and_expires_for_others(any_store: LabelStore, monkeypatch) -> None:
    import rlhfkit.labeling.store as store_mod

    ann, bob = _labeler(any_store, "ann"), _labeler(any_store, "bob")
    any_store.create_project("p", "pairwise", labels_per_item=1)
    item = any_store.add_pairwise_item("p", "q", text_a="a", text_b="b")
    assert any_store.next_item("p", ann).id == item
    assert any_store.next_item("p", ann).id == item  # reload: the same item
    assert any_store.next_item("p", bob) is None  # held by ann's lease
    monkeypatch.setattr(store_mod, "LEASE", timedelta(seconds=-1))  # ann's lease has run out
    assert any_store.next_item("p", bob).id == item


def test_gold_items_are_mixed_in_every_gold_every(any_store: LabelStore) -> None:
    ann = _labeler(any_store)
    any_store.create_project("p", "pairwise", gold_every=2)
    regular = [any_store.add_pairwise_item("p", f"q{i}", text_a="a", text_b="b") for i in range(5)]
    gold = [any_store.add_pairwise_item("p", f"g{i}", text_a="a", text_b="b", gold={"choice": "A"}) for i in range(3)]
    order = []
    while (item := any_store.next_item("p", ann)) is not None:
        order.append(item.id)
        any_store.submit(ann, item.id, f"key-{item.id:08d}", {"choice": "A"})
    assert order == regular[:2] + gold[:1] + regular[2:4] + gold[1:2] + regular[4:] + gold[2:]


def test_active_selection_orders_by_priority(any_store: LabelStore) -> None:
    ann = _labeler(any_store)
    any_store.create_project("p", "ranking", active_selection=True)
    ids = [any_store.add_ranking_item("p", f"q{i}", ["a", "b"]) for i in range(3)]
    any_store.set_priorities("p", {ids[0]: 0.1, ids[1]: 0.9, ids[2]: 0.5})
    got = []
    while (item := any_store.next_item("p", ann)) is not None:
        got.append(item.id)
        any_store.submit(ann, item.id, f"key-{item.id:08d}", {"ranks": [0, 1]})
    assert got == [ids[1], ids[2], ids[0]]


def test_add_items_is_all_or_nothing(any_store: LabelStore) -> None:
    any_store.create_project("r", "ranking")
    good = NewItem("q", ("a", "b"))
    bad = NewItem("q", tuple("abcdefghij"))  # K = 10
    with pytest.raises(LabelError, match="2..9"):
        any_store.add_items("r", [good, good, bad])
    assert any_store.item_ids("r") == []


def test_pairwise_clip_item_api(any_store: LabelStore, tmp_path) -> None:
    """The control-task labeler's API: two clip files in, the answers out."""
    a, b = tmp_path / "a.gif", tmp_path / "b.mp4"
    a.write_bytes(b"GIF89a" + b"\x00" * 32)
    b.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 32)
    ann = _labeler(any_store)
    any_store.create_project("clips", "pairwise", labels_per_item=1)
    item = any_store.add_pairwise_item("clips", "Which hopper hops?", a, b, meta={"segments": [3, 7]})
    shown = any_store.next_item("clips", ann)
    assert [m.content_type for m in shown.media] == ["image/gif", "video/mp4"]
    assert any_store.media(ann, shown.media[1].id) == ("video/mp4", b.read_bytes())
    any_store.submit(ann, item, "clip-key-0001", {"choice": "B"})
    (answer,) = any_store.answers_for([item])[item]
    assert answer.payload == {"choice": "B"} and any_store.item(item).meta == {"segments": [3, 7]}
    html = tmp_path / "evil.mp4"
    html.write_text("<html><script>alert(1)</script></html>")
    with pytest.raises(LabelError, match="not a GIF"):
        any_store.add_pairwise_item("clips", "q", html, a)
