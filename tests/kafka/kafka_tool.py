"""The Kafka side of tests/kafka/fault.test.mjs, with confluent-kafka (the independent client test_kafka.py
uses too), run from tests/kafka/.venv:

  kafka_tool.py create BROKER TOPIC PARTITIONS   waits (at most 20 s) for the broker, creates the topic
  kafka_tool.py read BROKER TOPIC                prints "ready" once subscribed, then every record of the
                                                 topic from its beginning as one JSON line
                                                 {"key", "partition", "value"}, until killed or stdin closes
  kafka_tool.py wait BROKER TOPIC COUNT SECONDS  waits until the topic holds at least COUNT records (read
                                                 from its beginning); exits 1 after SECONDS
                                                 (bench/kafka-callgrind.sh: everything produced before the
                                                 server stops)
"""

import json
import sys
import threading
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(broker, topic, partitions):
    deadline = time.monotonic() + 20
    while True:
        admin = AdminClient({"bootstrap.servers": broker, "log_level": 0})
        try:
            admin.list_topics(timeout=2)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise SystemExit(f"kafka_tool: broker {broker} did not answer within 20 s")
            time.sleep(0.1)
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=int(partitions), replication_factor=1)], operation_timeout=10)
    for future in futures.values():
        future.result(timeout=15)
    print("created", flush=True)


def read(broker, topic):
    consumer = Consumer({
        "bootstrap.servers": broker,
        "group.id": "fault-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 50,
        "session.timeout.ms": 6000,
        "topic.metadata.refresh.interval.ms": 500,
        # The broker is killed on purpose: its connection errors are expected.
        "log_level": 0,
    })
    consumer.subscribe([topic])
    stop = threading.Event()
    # The test ends the reader by closing stdin (or killing it).
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    while not stop.is_set():
        message = consumer.poll(0.1)
        if message is None or message.error():
            continue
        key = message.key().decode() if message.key() is not None else None
        line = {"key": key, "partition": message.partition(), "value": json.loads(message.value())}
        print(json.dumps(line), flush=True)
    consumer.close()


def wait(broker, topic, count, seconds):
    # Records are counted by reading them (tansu's high watermark counts batches, not records), from
    # partitions assigned directly: no consumer group to join, so the count follows within ~50 ms.
    consumer = Consumer({
        "bootstrap.servers": broker,
        "group.id": "wait-" + uuid.uuid4().hex,
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 50,
        "log_level": 0,
    })
    deadline = time.monotonic() + float(seconds)
    held = 0
    assigned = False
    while held < int(count):
        if time.monotonic() > deadline:
            consumer.close()
            raise SystemExit(f"kafka_tool: {topic} holds {held} records, not {count}, after {seconds} s")
        if not assigned:
            found = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                time.sleep(0.1)
                continue
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in found.partitions])
            assigned = True
        held += sum(1 for m in consumer.consume(num_messages=10000, timeout=0.1) if not m.error())
    consumer.close()
    print(f"held {held}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "create":
        create(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "read":
        read(*sys.argv[2:])
    elif len(sys.argv) == 6 and sys.argv[1] == "wait":
        wait(*sys.argv[2:])
    else:
        raise SystemExit(__doc__)
