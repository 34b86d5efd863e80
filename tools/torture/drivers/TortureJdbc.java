// pgjdbc sessions for the torture harness, many per JVM (starting a JVM per
// session would cost ~1 s of CPU each). jdbc.ts spawns this and speaks the
// line protocol below over stdin/stdout; the JVM exits when stdin closes.
//
// A line is tab-separated fields; in a field \\ \t \n \r are escaped and a
// field that is exactly \N is SQL NULL. Requests: id cmd session args...
//   open  url user password | query sql param... | end | abort
// Replies: id done | id count n | id err sqlstate message
//   | id rows ncols nrows label... value...   (row-major)

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Types;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadFactory;

public final class TortureJdbc {
  private static final Writer OUT =
      new BufferedWriter(new OutputStreamWriter(new FileOutputStream(FileDescriptor.out), StandardCharsets.UTF_8), 1 << 16);
  // Daemon threads: a session blocked on a row lock must not keep the JVM alive after stdin closes.
  private static final ThreadFactory DAEMON = r -> {
    Thread t = new Thread(r);
    t.setDaemon(true);
    return t;
  };
  /** Runs Connection.abort's socket close off the reader thread. */
  private static final ExecutorService ABORTER = Executors.newCachedThreadPool(DAEMON);
  private static final Map<String, Session> SESSIONS = new ConcurrentHashMap<>();

  /** One thread per session: its statements run in order, and a blocked one stalls no other session. */
  private static final class Session {
    final ExecutorService exec = Executors.newSingleThreadExecutor(DAEMON);
    volatile Connection conn;
  }

  public static void main(String[] args) throws IOException {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String line;
    while ((line = in.readLine()) != null) {
      if (line.isEmpty()) continue;
      List<String> f = decode(line);
      try {
        dispatch(f);
      } catch (RuntimeException e) {
        // A malformed request fails alone, not the JVM with every session.
        replyError(f.get(0), e);
      }
    }
    // Node went away (or closed us): drop every connection without waiting for busy ones.
    for (Session s : SESSIONS.values()) abort(s);
    System.exit(0);
  }

  private static void dispatch(List<String> f) {
    String id = f.get(0);
    String cmd = f.size() > 1 ? f.get(1) : "";
    String sid = f.size() > 2 ? f.get(2) : "";
    switch (cmd) {
      case "open": {
        Session s = new Session();
        SESSIONS.put(sid, s);
        s.exec.execute(() -> {
          try {
            s.conn = DriverManager.getConnection(f.get(3), f.get(4), f.get(5));
            reply(id, "done");
          } catch (Throwable e) {
            SESSIONS.remove(sid);
            s.exec.shutdown();
            replyError(id, e);
          }
        });
        return;
      }
      case "abort": {
        // Not queued behind the session's statements: that is the point of an abort.
        Session s = SESSIONS.remove(sid);
        if (s != null) {
          abort(s);
          s.exec.shutdown();
        }
        reply(id, "done");
        return;
      }
      default: {
        Session s = SESSIONS.get(sid);
        if (s == null) {
          reply(id, "err", "08003", "no such jdbc session " + sid + " (closed or aborted)");
          return;
        }
        if (cmd.equals("end")) {
          SESSIONS.remove(sid);
          s.exec.execute(() -> {
            try {
              s.conn.close();
            } catch (Throwable e) {
              // Closing politely failed: the connection is gone either way.
            }
            reply(id, "done");
          });
          s.exec.shutdown();
        } else if (cmd.equals("query")) {
          s.exec.execute(() -> query(id, s, f.get(3), f.subList(4, f.size())));
        } else {
          reply(id, "err", null, "unknown command " + cmd);
        }
      }
    }
  }

  private static void abort(Session s) {
    Connection c = s.conn;
    if (c == null) return;
    try {
      c.abort(ABORTER);
    } catch (Throwable e) {
      // Already closed.
    }
  }

  private static void query(String id, Session s, String sql, List<String> params) {
    try (PreparedStatement ps = s.conn.prepareStatement(sql)) {
      for (int i = 0; i < params.size(); i++) {
        String p = params.get(i);
        // With stringtype=unspecified the server infers every parameter's type, NULLs included.
        if (p == null) ps.setNull(i + 1, Types.OTHER);
        else ps.setString(i + 1, p);
      }
      if (!ps.execute()) {
        reply(id, "count", String.valueOf(ps.getUpdateCount()));
        return;
      }
      try (ResultSet rs = ps.getResultSet()) {
        ResultSetMetaData md = rs.getMetaData();
        int n = md.getColumnCount();
        List<String> values = new ArrayList<>();
        int rows = 0;
        while (rs.next()) {
          rows++;
          for (int i = 1; i <= n; i++) values.add(rs.getString(i));
        }
        List<String> out = new ArrayList<>(values.size() + n + 4);
        out.add(id);
        out.add("rows");
        out.add(String.valueOf(n));
        out.add(String.valueOf(rows));
        for (int i = 1; i <= n; i++) out.add(md.getColumnLabel(i));
        out.addAll(values);
        write(out);
      }
    } catch (Throwable e) {
      replyError(id, e);
    }
  }

  private static void replyError(String id, Throwable e) {
    String state = e instanceof SQLException ? ((SQLException) e).getSQLState() : null;
    String msg = e.getMessage() != null ? e.getMessage() : e.toString();
    // Not the server's error (a driver failure reading what it got): where it happened, for the findings.
    if (!(e instanceof SQLException)) {
      StringBuilder where = new StringBuilder(e.getClass().getName() + ": " + msg);
      StackTraceElement[] st = e.getStackTrace();
      for (int i = 0; i < Math.min(6, st.length); i++) where.append(" at ").append(st[i]);
      msg = where.toString();
    }
    reply(id, "err", state, msg);
  }

  private static void reply(String... fields) {
    write(Arrays.asList(fields)); // asList, not List.of: fields may be null
  }

  private static void write(List<String> fields) {
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < fields.size(); i++) {
      if (i > 0) b.append('\t');
      encode(b, fields.get(i));
    }
    b.append('\n');
    synchronized (OUT) {
      try {
        OUT.write(b.toString());
        OUT.flush();
      } catch (IOException e) {
        System.exit(1); // Node is gone.
      }
    }
  }

  private static void encode(StringBuilder b, String s) {
    if (s == null) {
      b.append("\\N");
      return;
    }
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '\\': b.append("\\\\"); break;
        case '\t': b.append("\\t"); break;
        case '\n': b.append("\\n"); break;
        case '\r': b.append("\\r"); break;
        default: b.append(c);
      }
    }
  }

  private static List<String> decode(String line) {
    List<String> out = new ArrayList<>();
    for (String raw : line.split("\t", -1)) {
      if (raw.equals("\\N")) {
        out.add(null);
        continue;
      }
      StringBuilder b = new StringBuilder(raw.length());
      for (int i = 0; i < raw.length(); i++) {
        char c = raw.charAt(i);
        if (c != '\\' || i + 1 == raw.length()) {
          b.append(c);
          continue;
        }
        char e = raw.charAt(++i);
        b.append(e == 't' ? '\t' : e == 'n' ? '\n' : e == 'r' ? '\r' : e);
      }
      out.add(b.toString());
    }
    return out;
  }
}
