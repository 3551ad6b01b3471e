#!/usr/bin/env python3
"""Flink ZooKeeper-HA failover rounds against one coordination backend (stdlib only).

Started by run_flink_ha.sh once the backend (Conclave or ZooKeeper 3.8) serves the quorum.
Runs a standalone Flink cluster (2 JobManagers, 1 TaskManager, straight `java` on the jars of
PyPI's apache-flink-libraries), submits CheckpointedCounter, then per round kill -9s the leading
JobManager and measures kill -> standby granted leadership and kill -> job RUNNING again (job and
every vertex RUNNING on the new leader), checks the job was restored from a checkpoint at least as
new as the last one completed before the kill and that no checkpoint id was handed out twice,
and restarts the killed JobManager as the next standby. Every wait is bounded; every process it
started is killed on exit. Appends one TSV row per round to --results; exit 1 on any failed check.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

# Java 17 needs these for Flink (the distribution's default env.java.opts.all).
JAVA_OPTS = ["--add-exports=java.base/sun.net.util=ALL-UNNAMED",
             "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
             "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED"] + [
    f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in (
        "java.lang", "java.net", "java.io", "java.nio", "sun.nio.ch", "java.lang.reflect",
        "java.text", "java.time", "java.util", "java.util.concurrent",
        "java.util.concurrent.atomic", "java.util.concurrent.locks")]

LEADER_LINE = b"granted leadership"
# Logged once a JobManager's last leader contender joined the election (its latch follows).
CONTENDING_LINE = b"registered under component 'resource_manager'"
MISMATCH = b"STATE-MISMATCH"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, timeout, probe, every=0.05):
    """Polls probe() until it returns a truthy value; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def rest(port, path, data=None, headers=None, timeout=2.0):
    """GET (or POST data) on a JobManager's REST port; None on any error or non-2xx."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"{}")
    except (OSError, ValueError):
        return None


class Flink:
    """The Flink processes of one backend run, all under `out`."""

    def __init__(self, home, quorum, out, session_timeout_ms):
        self.lib = os.path.join(home, "lib")
        self.out = out
        self.procs = []
        self.conf = os.path.join(out, "conf")
        os.makedirs(self.conf, exist_ok=True)
        self.rest_ports = [free_port(), free_port()]
        self.jm = [None, None]  # (Popen, log path) per JobManager slot
        self.gen = [0, 0]
        settings = {
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.bind-host": "127.0.0.1",
            "taskmanager.host": "127.0.0.1",
            "taskmanager.bind-host": "127.0.0.1",
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "high-availability.type": "zookeeper",
            "high-availability.zookeeper.quorum": quorum,
            "high-availability.zookeeper.path.root": "/flink",
            "high-availability.cluster-id": "/ha-" + uuid.uuid4().hex[:8],
            "high-availability.storageDir": "file://" + os.path.join(out, "ha"),
            "high-availability.zookeeper.client.session-timeout": str(session_timeout_ms),
            "high-availability.zookeeper.client.connection-timeout": "3000",
            "high-availability.zookeeper.client.retry-wait": "500",
            "high-availability.zookeeper.client.max-retry-attempts": "3",
            "heartbeat.interval": "1000",
            "heartbeat.timeout": "5000",
            "execution.checkpointing.dir": "file://" + os.path.join(out, "checkpoints"),
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": "1000",
            "restart-strategy.fixed-delay.delay": "500 ms",
            "web.refresh-interval": "500",
            "rest.cache.checkpoint-statistics.timeout": "500 ms",
            "taskmanager.numberOfTaskSlots": "1",
            "parallelism.default": "1",
            # A TaskManager started without Flink's shell scripts needs these explicitly.
            "taskmanager.cpu.cores": "1",
            "taskmanager.memory.framework.heap.size": "64m",
            "taskmanager.memory.framework.off-heap.size": "64m",
            "taskmanager.memory.jvm-metaspace.size": "256m",
            "taskmanager.memory.jvm-overhead.min": "192m",
            "taskmanager.memory.jvm-overhead.max": "192m",
            "taskmanager.memory.task.heap.size": "192m",
            "taskmanager.memory.task.off-heap.size": "0m",
            "taskmanager.memory.managed.size": "64m",
            "taskmanager.memory.network.min": "32m",
            "taskmanager.memory.network.max": "32m",
        }
        with open(os.path.join(self.conf, "config.yaml"), "w") as f:
            f.writelines(f"{k}: {v}\n" for k, v in settings.items())
        with open(os.path.join(self.conf, "log4j.properties"), "w") as f:
            f.write("rootLogger.level = INFO\nrootLogger.appenderRef.file.ref = File\n"
                    "appender.file.type = File\nappender.file.name = File\n"
                    "appender.file.fileName = ${sys:log.file}\nappender.file.layout.type = PatternLayout\n"
                    "appender.file.layout.pattern = %d{HH:mm:ss,SSS} %-5p %c{1} - %m%n\n")

    def _java(self, name, main, heap, args):
        log = os.path.join(self.out, name + ".log")
        cmd = ["java", f"-Xmx{heap}", f"-Xms{heap}", "-XX:MaxMetaspaceSize=256m",
               "-XX:MaxDirectMemorySize=256m", *JAVA_OPTS, f"-Dlog.file={log}",
               "-Dlog4j.configurationFile=" + os.path.join(self.conf, "log4j.properties"),
               "-cp", os.path.join(self.lib, "*"), main, "--configDir", self.conf, *args]
        with open(os.path.join(self.out, name + ".out"), "wb") as stdout:
            p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p, log

    def start_jm(self, i):
        self.gen[i] += 1
        port = self.rest_ports[i]
        self.jm[i] = self._java(f"jm{i + 1}-{self.gen[i]}",
                                "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
                                "384m", ["-D", f"rest.port={port}", "-D", f"rest.bind-port={port}"])

    def start_tm(self):
        self.tm = self._java("tm", "org.apache.flink.runtime.taskexecutor.TaskManagerRunner", "400m", [])

    def _logged(self, i, line):
        p, log = self.jm[i]
        if p.poll() is not None:
            return False
        try:
            with open(log, "rb") as f:
                return line in f.read()
        except OSError:
            return False

    def is_leader(self, i):
        return self._logged(i, LEADER_LINE)

    def standby_ready(self, i):
        """JobManager i contends for leadership and its REST endpoint answers."""
        return self._logged(i, CONTENDING_LINE) and rest(self.rest_ports[i], "/overview") is not None

    def leader(self):
        leaders = [i for i in (0, 1) if self.is_leader(i)]
        return leaders[0] if len(leaders) == 1 else None

    def tm_alive(self):
        """True while the TaskManager runs; RuntimeError (naming its log) once it exited."""
        if self.tm[0].poll() is not None:
            raise RuntimeError(f"the TaskManager exited with {self.tm[0].returncode}: see {self.tm[1]}")
        return True

    def tm_mismatch(self):
        with open(self.tm[1].replace(".log", ".out"), "rb") as f:
            return MISMATCH in f.read()

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()


def submit(port, jar):
    boundary = uuid.uuid4().hex
    with open(jar, "rb") as f:
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"jarfile\"; "
                f"filename=\"{os.path.basename(jar)}\"\r\nContent-Type: application/x-java-archive\r\n\r\n"
                ).encode() + f.read() + f"\r\n--{boundary}--\r\n".encode()
    up = rest(port, "/jars/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"},
              timeout=30)
    if not up or "filename" not in up:
        raise RuntimeError(f"jar upload refused: {up}")
    jar_id = os.path.basename(up["filename"])
    run = rest(port, f"/jars/{jar_id}/run", json.dumps({"entryClass": "CheckpointedCounter"}).encode(),
               {"Content-Type": "application/json"}, timeout=60)
    if not run or "jobid" not in run:
        raise RuntimeError(f"job submission refused: {run}")
    return run["jobid"]


def running(port, job):
    j = rest(port, f"/jobs/{job}")
    return bool(j) and j.get("state") == "RUNNING" and bool(j.get("vertices")) and all(
        v.get("status") == "RUNNING" for v in j["vertices"])


def checkpoints(port, job):
    return rest(port, f"/jobs/{job}/checkpoints") or {}


def completed_id(cp):
    latest = (cp.get("latest") or {}).get("completed") or {}
    return latest.get("id", -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", required=True)
    ap.add_argument("--quorum", required=True)
    ap.add_argument("--flink-home", required=True)
    ap.add_argument("--jar", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--round-timeout", type=float, default=120)
    a = ap.parse_args()
    flink = Flink(a.flink_home, a.quorum, a.out, a.session_timeout_ms)

    def on_term(*_):
        raise TimeoutError("stopped by the overall --timeout")
    signal.signal(signal.SIGTERM, on_term)
    failed = 0
    try:
        flink.start_jm(0)
        flink.start_jm(1)
        flink.start_tm()
        wait_for("a JobManager granted leadership", 120, lambda: flink.leader() is not None, 0.2)
        lead = flink.leader()
        port = flink.rest_ports[lead]
        wait_for("the TaskManager registered", 120,
                 lambda: flink.tm_alive() and (rest(port, "/taskmanagers") or {}).get("taskmanagers"), 0.2)
        job = submit(port, a.jar)
        print(f"[{a.backend}] job {job} submitted to JobManager {lead + 1}", flush=True)
        wait_for("job RUNNING with 2 completed checkpoints", 120,
                 lambda: running(port, job) and checkpoints(port, job).get("counts", {}).get("completed", 0) >= 2,
                 0.2)
        for rnd in range(1, a.rounds + 1):
            wait_for("one leading JobManager", 60, lambda: flink.leader() is not None, 0.1)
            lead = flink.leader()
            standby = 1 - lead
            wait_for("the standby JobManager contending", 120, lambda: flink.standby_ready(standby), 0.2)
            cp = checkpoints(flink.rest_ports[lead], job)
            before = completed_id(cp)
            max_seen = max([h.get("id", -1) for h in cp.get("history", [])] + [before])
            t0 = time.monotonic()
            flink.jm[lead][0].send_signal(signal.SIGKILL)
            wait_for("standby granted leadership", a.round_timeout, lambda: flink.is_leader(standby), 0.02)
            t_leader = time.monotonic() - t0
            sport = flink.rest_ports[standby]
            wait_for("job RUNNING on the new leader", a.round_timeout, lambda: running(sport, job), 0.05)
            t_running = time.monotonic() - t0
            flink.jm[lead][0].wait()
            flink.start_jm(lead)  # the killed JobManager comes back as the next standby
            restored = wait_for("restored checkpoint reported", 30,
                                lambda: ((checkpoints(sport, job).get("latest") or {}).get("restored") or {}),
                                0.1).get("id", -1)
            wait_for("2 checkpoints completed after recovery", a.round_timeout,
                     lambda: completed_id(checkpoints(sport, job)) >= max(restored, max_seen) + 2, 0.2)
            new_ids = [h["id"] for h in checkpoints(sport, job).get("history", []) if "id" in h]
            problems = [what for what, bad in (
                (f"restored {restored} older than completed {before}", restored < before),
                (f"checkpoint id {min(new_ids, default=-1)} handed out again", min(new_ids, default=-1) <= max_seen),
                ("STATE-MISMATCH in tm.out", flink.tm_mismatch())) if bad]
            ok = not problems
            failed += not ok
            row = [a.backend, rnd, f"{t_leader:.3f}", f"{t_running:.3f}", before, max_seen, restored,
                   min(new_ids, default=-1), "ok" if ok else "FAILED"]
            with open(a.results, "a") as f:
                f.write("\t".join(map(str, row)) + "\n")
            print(f"[{a.backend}] round {rnd}: leader after {t_leader:.3f} s, RUNNING after {t_running:.3f} s, "
                  f"last completed before kill {before} (max id {max_seen}), restored {restored}, "
                  f"first new id {min(new_ids, default=-1)}: {'ok' if ok else 'FAILED: ' + '; '.join(problems)}", flush=True)
    except (TimeoutError, RuntimeError) as e:
        print(f"[{a.backend}] FAILED: {e} (logs in {a.out})", file=sys.stderr, flush=True)
        failed += 1
    finally:
        flink.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
