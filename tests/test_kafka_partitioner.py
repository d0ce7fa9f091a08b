"""The producers' partitioner picks the partition aiokafka's default one (the Java
client's) picks for every key, however often the key comes back."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from runtime.config import KafkaConfig, ServiceConfig
from runtime.kafka import KeyedPartitioner, make_producer, partition_for


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=30), st.integers(1, 64))
def test_each_key_goes_where_the_default_partitioner_sends_it(
    keys: list[bytes], count: int
) -> None:
    partitions = list(range(count))
    keyed = KeyedPartitioner()
    keyed.KEYS_REMEMBERED = 5  # forgets along the way too
    for key in keys + keys:
        expected = DefaultPartitioner()(key, partitions, partitions)
        assert keyed(key, partitions, partitions) == expected
        if key.isascii():
            assert partition_for(key.decode(), count) == expected


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    keyed = KeyedPartitioner()
    assert {keyed(None, [0, 1, 2, 3], [1, 3]) for _ in range(100)} == {1, 3}
    assert {keyed(None, [0, 1], []) for _ in range(100)} == {0, 1}


async def test_the_services_producers_use_it() -> None:
    config = ServiceConfig(kafka=KafkaConfig(bootstrap_servers="127.0.0.1:9"))
    producer = make_producer(config, {})  # not started: nothing is sent
    try:
        assert isinstance(producer._partitioner, KeyedPartitioner)
    finally:
        await producer.stop()
