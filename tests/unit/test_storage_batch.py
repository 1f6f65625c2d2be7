"""The shared rules of a batch (``storage.batch``) on the plain picture of a data dir.

:class:`DurableImage` is the disk of the model store, the simulator and the tests'
network, so what it keeps of the membership history and the registry is what they
restart from; the real engines are held to the same rules in the contract tests.
"""

from __future__ import annotations

from pyxos.core.ballot import Ballot
from pyxos.core.messages import SlotValue
from pyxos.core.ready import Persist, Standing
from pyxos.storage.batch import DurableImage, plan_write, update_registry


def entry(slot: int) -> SlotValue:
    return SlotValue(slot, Ballot(1, 1), (b"%d" % slot,))


def test_the_plan_carries_the_membership_and_the_registrations_as_given() -> None:
    plan = plan_write(Persist(registry={2: 0, 3: 7}, membership=b"m"), 0)
    assert (plan.registry, plan.membership) == ({2: 0, 3: 7}, b"m")
    assert plan_write(Persist(promised=Ballot(1, 1)), 0).membership is None


def test_the_image_keeps_the_last_membership_written() -> None:
    image = DurableImage(5)
    assert image.recover().membership is None
    image.write(Persist(entries=[entry(1)], membership=b"first"))
    image.write(Persist(commit_index=1))  # None: the history stays
    assert image.recover().membership == b"first"
    image.write(Persist(membership=b"second"))
    state = image.recover()
    assert (state.membership, state.commit_index, state.incarnation) == (b"second", 1, 5)


def test_a_registration_overwrites_and_zero_forgets() -> None:
    image = DurableImage(5)
    image.write(Persist(registry={2: 22, 3: 33}))
    image.write(Persist(registry={2: 99, 3: 0, 4: 0}))
    assert image.recover().registry == {2: 99}
    registry = {1: 1, 2: 2}
    update_registry(registry, {1: 0, 2: 5, 6: 6})
    assert registry == {2: 5, 6: 6}


def test_a_copy_is_a_separate_disk_with_the_same_records() -> None:
    image = DurableImage(5, standing=(Standing.VOTER, None))
    image.write(Persist(registry={2: 22}, membership=b"m1"))
    copy = image.copy()
    assert copy.recover() == image.recover()
    assert (copy.recover().membership, copy.recover().registry) == (b"m1", {2: 22})
    copy.write(Persist(registry={2: 0, 3: 33}, membership=b"m2"))
    assert (image.membership, image.registry) == (b"m1", {2: 22})
    assert (copy.membership, copy.registry) == (b"m2", {3: 33})
