#!/usr/bin/env python3
"""Uploads a file of SIZE bytes straight to storage through the API's presigned part URLs
(4 parts in flight, like the web page) while sampling the ingest-api's RSS every 100 ms.
Prints the RSS before, the maximum during, and after. Loopback only; stops by itself.

usage: upload_rss.py API_BASE API_KEY API_PID SIZE_BYTES
"""
import concurrent.futures
import json
import sys
import threading
import time
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def call(method, url, key, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=120) as response:
        text = response.read()
        return json.loads(text) if text else None


def main():
    base, key, pid, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rss_kib(pid))
            time.sleep(0.1)

    before = rss_kib(pid)
    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.time()
    session = call("POST", f"{base}/v1/uploads", key,
                   {"filename": "big.bin", "size": size, "content_type": "application/octet-stream"})
    upload_id, part_size, part_count = session["upload_id"], session["part_size"], session["part_count"]
    chunk = bytes(range(256)) * (part_size // 256)

    def upload(number):
        urls = call("GET", f"{base}/v1/uploads/{upload_id}/parts?from={number}&count=1", key)
        length = part_size if number < part_count else size - (part_count - 1) * part_size
        put = urllib.request.Request(urls["parts"][0]["url"], data=chunk[:length], method="PUT")
        with urllib.request.urlopen(put, timeout=300) as response:
            etag = response.headers["ETag"]
        call("PUT", f"{base}/v1/uploads/{upload_id}/parts/{number}", key, {"etag": etag})

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(upload, range(1, part_count + 1)))
    call("POST", f"{base}/v1/uploads/{upload_id}/complete", key)
    elapsed = time.time() - started
    stop.set()
    sampler.join()
    after = rss_kib(pid)
    print(f"RESULT size_bytes={size} parts={part_count} seconds={elapsed:.1f} "
          f"throughput_mib_s={size / elapsed / 2**20:.1f} rss_before_mib={before / 1024:.1f} "
          f"rss_max_mib={max(samples) / 1024:.1f} rss_after_mib={after / 1024:.1f}")


if __name__ == "__main__":
    main()
