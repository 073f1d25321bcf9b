"""The local broker launcher's pure parts (no JVM)."""

from __future__ import annotations

import base64
import binascii

from hookstream.broker import _cluster_id


def test_a_new_cluster_id_never_starts_with_a_dash_so_storage_format_always_takes_it():
    # kafka-storage's argument parser read a cluster id starting with "-" as an option ("--cluster-id/-t:
    # expected one argument"): 1 broker start in 64 failed. 5,000 draws miss that with probability < 1e-34.
    ids = [_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    for cluster_id in ids[:50]:  # still Kafka's format: 16 bytes, URL-safe base64, no padding
        assert len(cluster_id) == 22
        try:
            assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
        except binascii.Error as exc:
            raise AssertionError(cluster_id) from exc
