// A JMS client for the ActiveMQ-on-pgraid tests (test/activemq/activemq.test.ts
// compiles and runs it through test/activemq/harness.ts).
//
//   java -cp OUT:<activemq-client, geronimo-jms, hawtbuf, slf4j jars> JmsCheck produce <brokerUrl> <queue> <count> <seed> [firstId [size]]
//   java -cp ... JmsCheck consume <brokerUrl> <queue> <transacted|client-ack> <max> <idleMs>
//
// produce: sends `count` persistent BytesMessages with ids firstId..firstId+count-1 (default
// firstId 0). The body of message `id` is 100 B..64 KiB of random bytes drawn from
// Random(seed, id), so a rerun with the same seed sends the same bytes. Each message carries
// the int property `id` and the string property `sha256` (hex of the body). Sends are
// synchronous (persistent sends are sync by default in ActiveMQ; this program does not turn
// on async sends), so a send that returned was stored by the broker.
// stdout: `# sent <n>` every 50 messages, `SENT <count>` at the end. If a send fails:
// `FAILED sending <id> after <n> confirmed: <exception>` and exit 1.
//
// consume: receives until `max` messages or no message for idleMs.
//   transacted: transacted session, commit after every 10 messages and once at the end;
//   client-ack: CLIENT_ACKNOWLEDGE session, each message acknowledged after it is checked.
// A `GOT <id> OK|CORRUPT` line is printed only once the message's commit/acknowledge has
// returned, with ` redelivered` appended if JMSRedelivered was set. `# recv <id>` is printed at
// receipt (so a hang or a failed commit shows which messages were in flight).
// At the end: `RECEIVED <n> OK <ok> CORRUPT <corrupt> END <max|idle>`. On a JMS error:
// `FAILED <exception>` and exit 1 (the GOT lines before it stand).
//
// Lines starting with '#' are progress only. Exit status: 0 done, 1 JMS failure, 2 usage.

import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import javax.jms.BytesMessage;
import javax.jms.Connection;
import javax.jms.DeliveryMode;
import javax.jms.JMSException;
import javax.jms.Message;
import javax.jms.MessageConsumer;
import javax.jms.MessageProducer;
import javax.jms.Queue;
import javax.jms.Session;

import org.apache.activemq.ActiveMQConnectionFactory;

public final class JmsCheck {
  static final int MIN_SIZE = 100;
  static final int MAX_SIZE = 64 * 1024;
  static final int COMMIT_EVERY = 10;
  static final int PROGRESS_EVERY = 50;

  public static void main(String[] args) {
    int status;
    try {
      if (args.length >= 1 && args[0].equals("produce") && args.length >= 5 && args.length <= 7) {
        status = produce(args[1], args[2], Integer.parseInt(args[3]), Long.parseLong(args[4]), args.length >= 6 ? Integer.parseInt(args[5]) : 0, args.length == 7 ? Integer.parseInt(args[6]) : 0);
      } else if (args.length == 6 && args[0].equals("consume")) {
        status = consume(args[1], args[2], args[3], Integer.parseInt(args[4]), Long.parseLong(args[5]));
      } else {
        System.err.println("usage: JmsCheck produce <brokerUrl> <queue> <count> <seed> [firstId [size]]\n"
            + "       JmsCheck consume <brokerUrl> <queue> <transacted|client-ack> <max> <idleMs>");
        status = 2;
      }
    } catch (NumberFormatException e) {
      System.err.println("bad number: " + e.getMessage());
      status = 2;
    }
    System.out.flush();
    // The ActiveMQ client leaves non-daemon threads behind on some failures; never hang on them.
    System.exit(status);
  }

  /** The body of message `id` for `seed`: deterministic, 100 B..64 KiB. */
  /** size > 0: every body that many bytes (the benchmark's 1 KiB); 0: 100 B..64 KiB. */
  static byte[] body(long seed, int id, int size) {
    Random r = new Random(seed * 1_000_003L + id);
    byte[] b = new byte[size > 0 ? size : MIN_SIZE + r.nextInt(MAX_SIZE - MIN_SIZE + 1)];
    r.nextBytes(b);
    return b;
  }

  static String sha256(byte[] b) {
    try {
      byte[] d = MessageDigest.getInstance("SHA-256").digest(b);
      StringBuilder s = new StringBuilder(64);
      for (byte x : d) s.append(String.format("%02x", x & 0xff));
      return s.toString();
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  static String describe(Throwable e) {
    StringBuilder s = new StringBuilder(e.toString());
    for (Throwable c = e.getCause(); c != null && c != e; c = c.getCause()) s.append(" <- ").append(c);
    return s.toString().replace('\n', ' ');
  }

  static int produce(String url, String queueName, int count, long seed, int firstId, int size) {
    int confirmed = 0;
    int id = firstId;
    Connection conn = null;
    try {
      conn = new ActiveMQConnectionFactory(url).createConnection();
      conn.start();
      Session session = conn.createSession(false, Session.AUTO_ACKNOWLEDGE);
      Queue queue = session.createQueue(queueName);
      MessageProducer producer = session.createProducer(queue);
      producer.setDeliveryMode(DeliveryMode.PERSISTENT);
      for (; id < firstId + count; id++) {
        byte[] b = body(seed, id, size);
        BytesMessage m = session.createBytesMessage();
        m.writeBytes(b);
        m.setIntProperty("id", id);
        m.setStringProperty("sha256", sha256(b));
        producer.send(m);
        confirmed++;
        if (confirmed % PROGRESS_EVERY == 0) System.out.println("# sent " + confirmed);
      }
      System.out.println("SENT " + confirmed);
      return 0;
    } catch (JMSException | RuntimeException e) {
      System.out.println("FAILED sending " + id + " after " + confirmed + " confirmed: " + describe(e));
      return 1;
    } finally {
      close(conn);
    }
  }

  static final class Got {
    final int id;
    final boolean ok;
    final boolean redelivered;

    Got(int id, boolean ok, boolean redelivered) {
      this.id = id;
      this.ok = ok;
      this.redelivered = redelivered;
    }

    String line() {
      return "GOT " + id + (ok ? " OK" : " CORRUPT") + (redelivered ? " redelivered" : "");
    }
  }

  static int consume(String url, String queueName, String mode, int max, long idleMs) {
    boolean transacted;
    if (mode.equals("transacted")) transacted = true;
    else if (mode.equals("client-ack")) transacted = false;
    else {
      System.err.println("mode must be transacted or client-ack, not " + mode);
      return 2;
    }
    int received = 0;
    int ok = 0;
    int corrupt = 0;
    String end = "max";
    List<Got> pending = new ArrayList<>();
    Connection conn = null;
    try {
      conn = new ActiveMQConnectionFactory(url).createConnection();
      conn.start();
      Session session = transacted ? conn.createSession(true, Session.SESSION_TRANSACTED) : conn.createSession(false, Session.CLIENT_ACKNOWLEDGE);
      MessageConsumer consumer = session.createConsumer(session.createQueue(queueName));
      while (received < max) {
        Message m = consumer.receive(idleMs);
        if (m == null) {
          end = "idle";
          break;
        }
        int id = m.propertyExists("id") ? m.getIntProperty("id") : -1;
        System.out.println("# recv " + id);
        boolean good = false;
        if (m instanceof BytesMessage && id >= 0) {
          BytesMessage bm = (BytesMessage) m;
          long len = bm.getBodyLength();
          if (len >= 0 && len <= MAX_SIZE) {
            byte[] b = new byte[(int) len];
            bm.readBytes(b);
            good = sha256(b).equals(m.getStringProperty("sha256"));
          }
        }
        received++;
        if (good) ok++;
        else corrupt++;
        Got g = new Got(id, good, m.getJMSRedelivered());
        if (transacted) {
          pending.add(g);
          if (pending.size() >= COMMIT_EVERY) {
            session.commit();
            for (Got p : pending) System.out.println(p.line());
            pending.clear();
          }
        } else {
          m.acknowledge();
          System.out.println(g.line());
        }
      }
      if (transacted && !pending.isEmpty()) {
        session.commit();
        for (Got p : pending) System.out.println(p.line());
        pending.clear();
      }
      consumer.close();
      session.close();
      System.out.println("RECEIVED " + received + " OK " + ok + " CORRUPT " + corrupt + " END " + end);
      return 0;
    } catch (JMSException | RuntimeException e) {
      System.out.println("FAILED " + describe(e));
      return 1;
    } finally {
      close(conn);
    }
  }

  static void close(Connection conn) {
    if (conn == null) return;
    try {
      conn.close();
    } catch (JMSException e) {
      System.out.println("# close failed: " + describe(e));
    }
  }
}
