// Apache Curator 5.4 recipes against Conclave's ZooKeeper port (server/tests/zk/run_curator.sh).
// Each check prints "ok <name>" or throws; the runner kills the Conclave leader when this program
// prints "kill-leader-now" and waits for "leader-killed" on stdin, then the recipes run again.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.api.transaction.CuratorOp;
import org.apache.curator.framework.api.transaction.CuratorTransactionResult;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.cache.TreeCache;
import org.apache.curator.framework.recipes.cache.TreeCacheEvent;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.nodes.PersistentNode;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.framework.recipes.shared.VersionedValue;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.data.Stat;

public class CuratorCheck {
    static CuratorFramework client(String hosts) throws Exception {
        CuratorFramework c = CuratorFrameworkFactory.newClient(hosts, 10_000, 5_000, new ExponentialBackoffRetry(100, 20, 2_000));
        c.start();
        if (!c.blockUntilConnected(20, TimeUnit.SECONDS)) throw new IllegalStateException("not connected");
        return c;
    }

    static void check(boolean cond, String what) {
        if (!cond) throw new AssertionError(what);
    }

    static void ok(String name) {
        System.out.println("ok " + name);
        System.out.flush();
    }

    static void leaderLatch(String hosts, String base) throws Exception {
        try (CuratorFramework a = client(hosts); CuratorFramework b = client(hosts)) {
            LeaderLatch la = new LeaderLatch(a, base + "/latch", "a");
            LeaderLatch lb = new LeaderLatch(b, base + "/latch", "b");
            la.start();
            lb.start();
            check(la.await(20, TimeUnit.SECONDS) || lb.await(20, TimeUnit.SECONDS), "a latch leader");
            LeaderLatch first = la.hasLeadership() ? la : lb;
            LeaderLatch second = first == la ? lb : la;
            check(!second.hasLeadership(), "exactly one latch leader");
            first.close();
            check(second.await(20, TimeUnit.SECONDS), "leadership passes on close");
            second.close();
        }
        ok("LeaderLatch");
    }

    static void leaderSelector(CuratorFramework c, String base) throws Exception {
        AtomicInteger turns = new AtomicInteger();
        CountDownLatch done = new CountDownLatch(2);
        List<LeaderSelector> selectors = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            LeaderSelector s = new LeaderSelector(c, base + "/selector", new LeaderSelectorListenerAdapter() {
                public void takeLeadership(CuratorFramework cf) {
                    check(turns.incrementAndGet() == 1, "one leader at a time");
                    turns.decrementAndGet();
                    done.countDown();
                }
            });
            selectors.add(s);
            s.start();
        }
        check(done.await(20, TimeUnit.SECONDS), "both selectors led in turn");
        for (LeaderSelector s : selectors) s.close();
        ok("LeaderSelector");
    }

    static void mutex(String hosts, String base) throws Exception {
        int[] counter = {0};
        List<Thread> threads = new ArrayList<>();
        List<Throwable> errors = new ArrayList<>();
        for (int t = 0; t < 3; t++) {
            Thread th = new Thread(() -> {
                try (CuratorFramework c = client(hosts)) {
                    InterProcessMutex m = new InterProcessMutex(c, base + "/mutex");
                    for (int i = 0; i < 5; i++) {
                        check(m.acquire(20, TimeUnit.SECONDS), "mutex acquired");
                        try {
                            int v = counter[0];
                            Thread.sleep(2);
                            counter[0] = v + 1;
                        } finally {
                            m.release();
                        }
                    }
                } catch (Throwable e) {
                    synchronized (errors) { errors.add(e); }
                }
            });
            threads.add(th);
            th.start();
        }
        for (Thread th : threads) th.join();
        check(errors.isEmpty(), "mutex errors: " + errors);
        check(counter[0] == 15, "mutual exclusion: " + counter[0]);
        ok("InterProcessMutex");
    }

    static void sharedCount(CuratorFramework c, String base) throws Exception {
        try (SharedCount sc = new SharedCount(c, base + "/count", 0)) {
            sc.start();
            VersionedValue<Integer> v = sc.getVersionedValue();
            check(sc.trySetCount(v, v.getValue() + 1), "first versioned set");
            check(!sc.trySetCount(v, v.getValue() + 5), "stale version refused");
            long deadline = System.currentTimeMillis() + 10_000;
            while (sc.getCount() != 1 && System.currentTimeMillis() < deadline) Thread.sleep(20);
            check(sc.getCount() == 1, "count is 1: " + sc.getCount());
        }
        ok("SharedCount");
    }

    static void atomicLong(CuratorFramework c, String base) throws Exception {
        DistributedAtomicLong l = new DistributedAtomicLong(c, base + "/long", new ExponentialBackoffRetry(10, 10));
        for (int i = 0; i < 10; i++) check(l.increment().succeeded(), "increment");
        AtomicValue<Long> v = l.get();
        check(v.succeeded() && v.postValue() == 10, "atomic long is 10");
        ok("DistributedAtomicLong");
    }

    static void treeCache(CuratorFramework c, String base) throws Exception {
        CountDownLatch added = new CountDownLatch(3);
        try (TreeCache tc = TreeCache.newBuilder(c, base + "/tree").setCreateParentNodes(true).build()) {
            tc.getListenable().addListener((cf, e) -> {
                if (e.getType() == TreeCacheEvent.Type.NODE_ADDED && e.getData().getPath().contains("/tree/")) added.countDown();
            });
            tc.start();
            c.create().creatingParentContainersIfNeeded().forPath(base + "/tree/x");
            c.create().forPath(base + "/tree/x/y", "1".getBytes(StandardCharsets.UTF_8));
            c.create().forPath(base + "/tree/z");
            check(added.await(20, TimeUnit.SECONDS), "TreeCache saw three nodes");
            check(tc.getCurrentData(base + "/tree/x/y") != null, "TreeCache holds the data");
        }
        ok("TreeCache");
    }

    static void curatorCache(CuratorFramework c, String base) throws Exception {
        CountDownLatch changed = new CountDownLatch(1);
        CountDownLatch deleted = new CountDownLatch(1);
        c.create().creatingParentsIfNeeded().forPath(base + "/cc/a/b", "0".getBytes(StandardCharsets.UTF_8));
        try (CuratorCache cc = CuratorCache.build(c, base + "/cc")) {
            CountDownLatch initialized = new CountDownLatch(1);
            cc.listenable().addListener(CuratorCacheListener.builder()
                .forChanges((o, n) -> { if (n.getPath().endsWith("/a/b")) changed.countDown(); })
                .forDeletes(o -> { if (o.getPath().endsWith("/a/b")) deleted.countDown(); })
                .forInitialized(initialized::countDown)
                .build());
            cc.start();
            check(initialized.await(20, TimeUnit.SECONDS), "CuratorCache initialized");
            c.setData().forPath(base + "/cc/a/b", "1".getBytes(StandardCharsets.UTF_8));
            check(changed.await(20, TimeUnit.SECONDS), "persistent recursive watch saw the change");
            c.delete().forPath(base + "/cc/a/b");
            check(deleted.await(20, TimeUnit.SECONDS), "persistent recursive watch saw the delete");
        }
        ok("CuratorCache");
    }

    static void persistentNode(String hosts, String base) throws Exception {
        try (CuratorFramework owner = client(hosts); CuratorFramework other = client(hosts)) {
            try (PersistentNode n = new PersistentNode(owner, CreateMode.EPHEMERAL, false, base + "/pn", "x".getBytes(StandardCharsets.UTF_8))) {
                n.start();
                check(n.waitForInitialCreate(20, TimeUnit.SECONDS), "PersistentNode created");
                // Another session reads through another member: it sees the node once that
                // member applied it (ZooKeeper's rule without sync), so wait for it.
                Stat st = null;
                long until = System.currentTimeMillis() + 10_000;
                while ((st = other.checkExists().forPath(base + "/pn")) == null && System.currentTimeMillis() < until) Thread.sleep(20);
                check(st != null && st.getEphemeralOwner() == owner.getZookeeperClient().getZooKeeper().getSessionId(), "ephemeralOwner == owner session");
            }
            long deadline = System.currentTimeMillis() + 10_000;
            while (other.checkExists().forPath(base + "/pn") != null && System.currentTimeMillis() < deadline) Thread.sleep(20);
            check(other.checkExists().forPath(base + "/pn") == null, "PersistentNode removed on close");
        }
        ok("PersistentNode");
    }

    static void transaction(CuratorFramework c, String base) throws Exception {
        CuratorOp create = c.transactionOp().create().forPath(base + "/tx", "a".getBytes(StandardCharsets.UTF_8));
        CuratorOp lock = c.transactionOp().create().withMode(CreateMode.EPHEMERAL).forPath(base + "/tx-lock");
        CuratorOp set = c.transactionOp().setData().forPath(base + "/tx", "b".getBytes(StandardCharsets.UTF_8));
        CuratorOp check = c.transactionOp().check().withVersion(1).forPath(base + "/tx");
        List<CuratorTransactionResult> r = c.transaction().forOperations(create, lock, set, check);
        check(r.size() == 4, "four results");
        check(new String(c.getData().forPath(base + "/tx"), StandardCharsets.UTF_8).equals("b"), "transaction applied");
        try {
            CuratorOp bad = c.transactionOp().check().withVersion(7).forPath(base + "/tx");
            CuratorOp again = c.transactionOp().create().forPath(base + "/tx-2");
            c.transaction().forOperations(again, bad);
            check(false, "a failed check must fail the transaction");
        } catch (org.apache.zookeeper.KeeperException.BadVersionException expected) {
            check(c.checkExists().forPath(base + "/tx-2") == null, "nothing of a failed transaction applied");
        }
        ok("transaction");
    }

    static void round(String hosts, String base) throws Exception {
        try (CuratorFramework c = client(hosts)) {
            c.create().creatingParentContainersIfNeeded().forPath(base);
            leaderLatch(hosts, base);
            leaderSelector(c, base);
            mutex(hosts, base);
            sharedCount(c, base);
            atomicLong(c, base);
            treeCache(c, base);
            curatorCache(c, base);
            persistentNode(hosts, base);
            transaction(c, base);
        }
    }

    public static void main(String[] args) throws Exception {
        String hosts = args[0];
        round(hosts, "/curator-1");
        System.out.println("kill-leader-now");
        System.out.flush();
        String line = new BufferedReader(new InputStreamReader(System.in)).readLine();
        check("leader-killed".equals(line), "runner answered " + line);
        round(hosts, "/curator-2");
        System.out.println("all ok");
        System.exit(0);
    }
}
