import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/**
 * The checkpointing streaming job of the Flink HA failover run: an endless number sequence
 * (about 1000 numbers a second, paced in the source's chain), keyed by {@code n % 4}, each key counting its numbers in
 * keyed state, checkpointed every second. Exactly-once consistency of source position and
 * state is checked on every record: the number {@code n} must be the {@code n / 4 + 1}-th of
 * its key. A job restored from a checkpoint whose source offset and state disagree (or from no
 * checkpoint at all while the source resumed) prints {@code STATE-MISMATCH} to the
 * TaskManager's stderr, which the runner treats as a failure.
 */
public class CheckpointedCounter {
    public static void main(String[] args) throws Exception {
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(1);
        env.enableCheckpointing(1000);
        env.fromSequence(0, Long.MAX_VALUE)
                // Paced in the source's own chain: no backlog builds up in front of the
                // keyed operator, so checkpoint barriers pass at once.
                .map(n -> {
                    Thread.sleep(1);
                    return n;
                })
                .returns(Long.class)
                .keyBy(n -> n % 4)
                .map(new Count())
                .sinkTo(new DiscardingSink<>());
        env.execute("conclave-ha-counter");
    }

    /** Counts per key; checks the count against the number (see the class comment). */
    public static class Count extends RichMapFunction<Long, Long> {
        private transient ValueState<Long> count;
        private transient boolean reported;

        @Override
        public void open(OpenContext ctx) {
            count = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Long.class));
        }

        @Override
        public Long map(Long n) throws Exception {
            Long seen = count.value();
            long next = (seen == null ? 0 : seen) + 1;
            count.update(next);
            if (next != n / 4 + 1 && !reported) {
                reported = true;
                System.err.println("STATE-MISMATCH number " + n + " is the " + next + "-th of key " + (n % 4));
            }
            return next;
        }
    }
}
