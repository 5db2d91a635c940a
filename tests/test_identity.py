"""One Microsoft Entra ID credential per process (pipeline.adapters.azure.identity)."""

from __future__ import annotations

import threading

from azure.identity import DefaultAzureCredential

from pipeline.adapters.azure.identity import shared_credential


def test_every_client_of_the_process_gets_the_one_credential() -> None:
    got: list[object] = []
    lock = threading.Lock()

    def take() -> None:
        credential = shared_credential()
        with lock:
            got.append(credential)

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 16 and len({id(credential) for credential in got}) == 1
    assert isinstance(got[0], DefaultAzureCredential) and shared_credential() is got[0]
