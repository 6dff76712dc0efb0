package io.hookline.examples;

import io.hookline.events.Event;
import io.hookline.events.EventType;
import java.nio.ByteBuffer;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Publishes one event of each kind to hookline's event topics, the way a Java service would.
 *
 * <p>Values are Avro single-object encoded (docs/architecture.md §4): {@code C3 01}, the 8-byte
 * little-endian CRC-64-AVRO fingerprint of the schema's canonical form, the body — exactly what
 * Avro's {@link BinaryMessageEncoder} writes. Records are keyed by account id, so one account's events
 * stay in order (docs/architecture.md §3), by an idempotent producer that waits for every in-sync replica.
 *
 * <pre>
 * java -jar target/hookline-java-producer.jar [--bootstrap HOST:PORT] [--topic-prefix PREFIX] [--account ID]
 * </pre>
 *
 * Defaults: {@code HOOKLINE_KAFKA_BOOTSTRAP} (else 127.0.0.1:9092), {@code HOOKLINE_TOPIC_PREFIX} (else
 * none), account {@code acct-java}. Prints one line per acknowledged event: type, event id, topic,
 * partition, offset. Exits 1 when any event was not acknowledged, 2 on bad arguments.
 */
public final class PublishEvents {
    static final String CONTACT_EVENTS = "contact-events";
    static final String SALE_EVENTS = "sale-events";

    private PublishEvents() {}

    public static void main(String[] args) {
        String bootstrap = env("HOOKLINE_KAFKA_BOOTSTRAP", "127.0.0.1:9092");
        String prefix = env("HOOKLINE_TOPIC_PREFIX", "");
        String account = "acct-java";
        for (int i = 0; i < args.length; i += 2) {
            if (i + 1 >= args.length) {
                usage("missing value after " + args[i]);
            }
            switch (args[i]) {
                case "--bootstrap" -> bootstrap = args[i + 1];
                case "--topic-prefix" -> prefix = args[i + 1];
                case "--account" -> account = args[i + 1];
                default -> usage("unknown option " + args[i]);
            }
        }
        System.exit(publish(bootstrap, prefix, account));
    }

    static int publish(String bootstrap, String prefix, String account) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "hookline-java-producer");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        // An event not acknowledged within 30 s fails (as with hookline's Python publisher).
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30_000);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);

        // The generated class's encoder: single-object encoding with Event.avsc's fingerprint.
        BinaryMessageEncoder<Event> encoder = Event.getEncoder();
        List<Event> events = SampleEvents.all(account, Instant.now());
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        int failed = 0;
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(props)) {
            for (Event event : events) {
                String topic = prefix + topicFor(event.getType());
                sent.add(producer.send(new ProducerRecord<>(topic, event.getAccountId(), encode(encoder, event))));
            }
            producer.flush();
            for (int i = 0; i < events.size(); i++) {
                Event event = events.get(i);
                try {
                    RecordMetadata md = sent.get(i).get();
                    System.out.printf("%s %s %s %d %d%n",
                            event.getType(), event.getEventId(), md.topic(), md.partition(), md.offset());
                } catch (ExecutionException e) {
                    failed++;
                    System.err.printf("%s %s not published: %s%n", event.getType(), event.getEventId(), e.getCause());
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return 1;
                }
            }
        }
        return failed == 0 ? 0 : 1;
    }

    /** The topic (without prefix) that carries {@code type}, as hookline's own publisher chooses it. */
    static String topicFor(EventType type) {
        return type.name().startsWith("SALE_") ? SALE_EVENTS : CONTACT_EVENTS;
    }

    private static byte[] encode(BinaryMessageEncoder<Event> encoder, Event event) {
        try {
            ByteBuffer buffer = encoder.encode(event);
            byte[] bytes = new byte[buffer.remaining()];
            buffer.get(bytes);
            return bytes;
        } catch (java.io.IOException e) {
            throw new IllegalArgumentException("cannot encode " + event.getType() + ": " + e.getMessage(), e);
        }
    }

    private static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : value;
    }

    private static void usage(String problem) {
        System.err.println(problem);
        System.err.println(
                "usage: java -jar hookline-java-producer.jar [--bootstrap HOST:PORT] [--topic-prefix PREFIX] [--account ID]");
        System.exit(2);
    }
}
