// pgjdbc against pgraid: one line per check on stdout, `ok <name>` or
// `FAIL <name>: <reason>`, exit status 1 if any check failed.
//
// Build and run (test/clients/jdbc.test.ts does this):
//   javac -cp /usr/share/java/postgresql.jar -d OUT PgraidJdbcCheck.java
//   java -cp OUT:/usr/share/java/postgresql.jar PgraidJdbcCheck jdbc:postgresql://127.0.0.1:PORT/postgres USER PASSWORD
//
// Other stdout lines start with '#': `# start <name>` before a check runs (so a
// hang shows where), `# time <name> <ms>` after it. Every table is named jdbc_*.
// The data is deterministic (fixed ids, seeded random bytes, no now()/random()),
// so the backends must end identical.

import java.security.MessageDigest;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import org.postgresql.PGStatement;

public final class PgraidJdbcCheck {
  @FunctionalInterface
  interface Body {
    void run() throws Exception;
  }

  static final class CheckFailed extends Exception {
    private static final long serialVersionUID = 1L;

    CheckFailed(String message) {
      super(message);
    }
  }

  static String url;
  static String user;
  static String password;
  static Connection conn;
  static final List<String> failures = new ArrayList<>();

  public static void main(String[] args) {
    if (args.length != 3) {
      System.err.println("usage: java PgraidJdbcCheck <jdbcUrl> <user> <password>");
      System.exit(2);
    }
    url = args[0];
    user = args[1];
    password = args[2];

    check("connect", PgraidJdbcCheck::connect);
    if (conn == null) {
      System.out.println("# cannot go on without a connection");
      System.exit(1);
    }
    check("create_table", PgraidJdbcCheck::createTables);
    check("prepared_insert", PgraidJdbcCheck::preparedInsert);
    check("prepared_select", PgraidJdbcCheck::preparedSelect);
    check("batch_plain", PgraidJdbcCheck::batchPlain);
    check("batch_rewrite", PgraidJdbcCheck::batchRewrite);
    check("tx_commit", PgraidJdbcCheck::txCommit);
    check("tx_rollback", PgraidJdbcCheck::txRollback);
    check("unique_violation_rollback", PgraidJdbcCheck::uniqueViolationRollback);
    check("fetch_size_cursor", PgraidJdbcCheck::fetchSizeCursor);
    check("cursor_interleaved_write", PgraidJdbcCheck::cursorInterleavedWrite);
    check("bytea_1mib", () -> byteaRoundTrip(1, 1 << 20));
    check("bytea_16mib", () -> byteaRoundTrip(2, 16 << 20));
    check("select_for_update", PgraidJdbcCheck::selectForUpdate);
    check("for_update_blocks_other", PgraidJdbcCheck::forUpdateBlocksOther);
    check("for_update_nowait", PgraidJdbcCheck::forUpdateNowait);
    check("set_session_characteristics", PgraidJdbcCheck::sessionCharacteristics);
    check("set_transaction_isolation", PgraidJdbcCheck::setTransactionIsolation);
    check("is_valid", PgraidJdbcCheck::isValid);
    check("empty_query", PgraidJdbcCheck::emptyQuery);
    check("metadata_get_tables", PgraidJdbcCheck::metadata);
    check("close", PgraidJdbcCheck::closeConnection);

    System.out.println("# " + failures.size() + " failed" + (failures.isEmpty() ? "" : ": " + String.join(", ", failures)));
    System.out.flush();
    System.exit(failures.isEmpty() ? 0 : 1);
  }

  // ---------------------------------------------------------------- plumbing

  static void check(String name, Body body) {
    System.out.println("# start " + name);
    System.out.flush();
    long t0 = System.nanoTime();
    try {
      body.run();
      System.out.println("ok " + name);
    } catch (Throwable e) {
      System.out.println("FAIL " + name + ": " + describe(e));
      failures.add(name);
      recover();
    }
    System.out.println("# time " + name + " " + (System.nanoTime() - t0) / 1_000_000);
    System.out.flush();
  }

  /** One line: exception class, message, SQLSTATE, chained exceptions. */
  static String describe(Throwable e) {
    StringBuilder sb = new StringBuilder();
    Set<Throwable> seen = new HashSet<>();
    Throwable cur = e;
    while (cur != null && seen.add(cur)) {
      if (sb.length() > 0) sb.append(" <- ");
      if (!(cur instanceof CheckFailed)) sb.append(cur.getClass().getSimpleName()).append(": ");
      sb.append(cur.getMessage());
      if (cur instanceof SQLException) {
        SQLException se = (SQLException) cur;
        if (se.getSQLState() != null) sb.append(" [SQLSTATE ").append(se.getSQLState()).append(']');
        SQLException next = se.getNextException();
        if (next != null && next != cur.getCause() && seen.add(next)) {
          sb.append(" <- next: ").append(next.getMessage());
          if (next.getSQLState() != null) sb.append(" [SQLSTATE ").append(next.getSQLState()).append(']');
        }
      }
      cur = cur.getCause();
    }
    return sb.toString().replaceAll("\\s*\\R\\s*", " | ");
  }

  /** After a failed check: leave `conn` usable (autocommit, no open transaction) or replace it. */
  static void recover() {
    try {
      if (conn != null && !conn.isClosed() && conn.isValid(5)) {
        if (!conn.getAutoCommit()) {
          conn.rollback();
          conn.setAutoCommit(true);
        }
        return;
      }
    } catch (SQLException ignored) {
      // fall through and reconnect
    }
    System.out.println("# connection unusable after the failure, reconnecting");
    try {
      if (conn != null) conn.close();
    } catch (SQLException ignored) {
      // already broken
    }
    try {
      conn = open(new Properties());
    } catch (SQLException e) {
      System.out.println("# reconnect failed: " + describe(e));
      conn = null;
    }
  }

  static Connection open(Properties extra) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", user);
    p.setProperty("password", password);
    p.setProperty("connectTimeout", "10");
    p.setProperty("socketTimeout", "60");
    p.setProperty("ApplicationName", "pgraid-jdbc-check");
    p.putAll(extra);
    return DriverManager.getConnection(url, p);
  }

  static void expect(boolean cond, String what) throws CheckFailed {
    if (!cond) throw new CheckFailed(what);
  }

  static void expectEq(Object expected, Object actual, String what) throws CheckFailed {
    if (!java.util.Objects.equals(expected, actual)) {
      throw new CheckFailed(what + ": expected " + expected + ", got " + actual);
    }
  }

  /** Runs `body`, which must fail with SQLSTATE `state`. */
  static void expectSqlState(String state, Body body, String what) throws Exception {
    try {
      body.run();
    } catch (SQLException e) {
      SQLException s = e;
      if (e instanceof BatchUpdateException && e.getNextException() != null) s = e.getNextException();
      if (state.equals(s.getSQLState())) return;
      throw new CheckFailed(what + ": expected SQLSTATE " + state + ", got " + describe(e));
    }
    throw new CheckFailed(what + ": expected SQLSTATE " + state + ", but it succeeded");
  }

  static long scalarLong(Connection c, String sql) throws SQLException, CheckFailed {
    try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
      expect(rs.next(), "no row from: " + sql);
      return rs.getLong(1);
    }
  }

  static String scalarString(Connection c, String sql) throws SQLException, CheckFailed {
    try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
      expect(rs.next(), "no row from: " + sql);
      return rs.getString(1);
    }
  }

  static List<Integer> ids(Connection c, String sql) throws SQLException {
    List<Integer> out = new ArrayList<>();
    try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
      while (rs.next()) out.add(rs.getInt(1));
    }
    return out;
  }

  static void exec(Connection c, String sql) throws SQLException {
    try (Statement st = c.createStatement()) {
      st.execute(sql);
    }
  }

  // ---------------------------------------------------------------- checks

  static void connect() throws Exception {
    conn = open(new Properties());
    // pgraid logs in to the backends with its own role (backends[].user), so current_user is that role.
    String role = scalarString(conn, "SELECT current_user");
    String version = scalarString(conn, "SHOW server_version");
    expect(version != null && !version.isEmpty(), "server_version reported");
    System.out.println("# server_version " + version + ", pgjdbc " + conn.getMetaData().getDriverVersion() + ", backend role " + role);
  }

  static final String[] TABLES = {"jdbc_items", "jdbc_batch", "jdbc_tx", "jdbc_big", "jdbc_blob"};

  static void createTables() throws Exception {
    try (Statement st = conn.createStatement()) {
      for (String t : TABLES) st.execute("DROP TABLE IF EXISTS " + t);
      st.execute("CREATE TABLE jdbc_items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL DEFAULT 0)");
      st.execute("CREATE TABLE jdbc_batch (id int PRIMARY KEY, v text NOT NULL, n bigint NOT NULL)");
      st.execute("CREATE TABLE jdbc_tx (id int PRIMARY KEY, v text)");
      st.execute("CREATE TABLE jdbc_big (id int PRIMARY KEY, payload text NOT NULL)");
      st.execute("CREATE TABLE jdbc_blob (id int PRIMARY KEY, b bytea NOT NULL)");
    }
    for (String t : TABLES) expectEq(0L, scalarLong(conn, "SELECT count(*) FROM " + t), t + " exists and is empty");
  }

  /** 15 executions: past prepareThreshold (5) pgjdbc uses a named server-side statement (S_n). */
  static void preparedInsert() throws Exception {
    String sql = "INSERT INTO jdbc_items (id, name, qty) VALUES (?, ?, ?)";
    try (PreparedStatement ps = conn.prepareStatement(sql)) {
      for (int i = 1; i <= 10; i++) {
        ps.setInt(1, i);
        ps.setString(2, "item-" + i);
        ps.setInt(3, i * 10);
        expectEq(1, ps.executeUpdate(), "update count of insert " + i);
      }
      expect(ps.unwrap(PGStatement.class).isUseServerPrepare(), "pgjdbc switched to a named server-side statement after 10 executions");
    }
    // Same SQL again after close: pgjdbc takes the already prepared S_n from its statement cache.
    try (PreparedStatement ps = conn.prepareStatement(sql)) {
      for (int i = 11; i <= 15; i++) {
        ps.setInt(1, i);
        ps.setString(2, "item-" + i);
        ps.setInt(3, i * 10);
        expectEq(1, ps.executeUpdate(), "update count of insert " + i);
      }
    }
    expectEq(15L, scalarLong(conn, "SELECT count(*) FROM jdbc_items"), "rows in jdbc_items");
    expectEq(1200L, scalarLong(conn, "SELECT sum(qty) FROM jdbc_items"), "sum(qty)");
  }

  /** A parameterised read past prepareThreshold: named statement and binary results. */
  static void preparedSelect() throws Exception {
    try (PreparedStatement ps = conn.prepareStatement("SELECT name, qty FROM jdbc_items WHERE id = ?")) {
      for (int round = 0; round < 2; round++) {
        for (int i = 1; i <= 15; i++) {
          ps.setInt(1, i);
          try (ResultSet rs = ps.executeQuery()) {
            expect(rs.next(), "row " + i + " found");
            expectEq("item-" + i, rs.getString(1), "name of " + i);
            expectEq(i * 10, rs.getInt(2), "qty of " + i);
            expect(!rs.next(), "one row for id " + i);
          }
        }
      }
      expect(ps.unwrap(PGStatement.class).isUseServerPrepare(), "named server-side statement in use");
    }
  }

  static void fillBatch(Connection c, int from, int to) throws Exception {
    try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_batch (id, v, n) VALUES (?, ?, ?)")) {
      for (int i = from; i <= to; i++) {
        ps.setInt(1, i);
        ps.setString(2, "v" + i);
        ps.setLong(3, (long) i * 1_000_003L);
        ps.addBatch();
      }
      int[] counts = ps.executeBatch();
      expectEq(to - from + 1, counts.length, "executeBatch result length");
      for (int k = 0; k < counts.length; k++) {
        // 1 per row without rewriting; SUCCESS_NO_INFO (-2) for rewritten multi-row inserts.
        if (counts[k] != 1 && counts[k] != Statement.SUCCESS_NO_INFO) {
          throw new CheckFailed("update count " + k + " is " + counts[k]);
        }
      }
    }
  }

  /** 1000 rows, reWriteBatchedInserts=false (the default): 1000 Bind/Execute, one Sync. */
  static void batchPlain() throws Exception {
    fillBatch(conn, 1, 1000);
    expectEq(1000L, scalarLong(conn, "SELECT count(*) FROM jdbc_batch"), "rows after the plain batch");
  }

  /** 1000 rows on a second connection with reWriteBatchedInserts=true, in an explicit transaction. */
  static void batchRewrite() throws Exception {
    Properties p = new Properties();
    p.setProperty("reWriteBatchedInserts", "true");
    try (Connection c = open(p)) {
      c.setAutoCommit(false);
      fillBatch(c, 1001, 2000);
      c.commit();
      c.setAutoCommit(true);
    }
    expectEq(2000L, scalarLong(conn, "SELECT count(*) FROM jdbc_batch"), "rows after the rewritten batch");
    expectEq(2001000L, scalarLong(conn, "SELECT sum(id) FROM jdbc_batch"), "sum(id)");
    expectEq(2001000L * 1_000_003L, scalarLong(conn, "SELECT sum(n) FROM jdbc_batch"), "sum(n)");
  }

  static void txCommit() throws Exception {
    conn.setAutoCommit(false);
    try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_tx (id, v) VALUES (?, ?)")) {
      for (int i = 1; i <= 2; i++) {
        ps.setInt(1, i);
        ps.setString(2, "committed-" + i);
        ps.executeUpdate();
      }
    }
    conn.commit();
    conn.setAutoCommit(true);
    expectEq(List.of(1, 2), ids(conn, "SELECT id FROM jdbc_tx ORDER BY id"), "committed rows");
  }

  static void txRollback() throws Exception {
    conn.setAutoCommit(false);
    exec(conn, "INSERT INTO jdbc_tx (id, v) VALUES (3, 'rolled back'), (4, 'rolled back')");
    exec(conn, "UPDATE jdbc_tx SET v = 'changed' WHERE id = 1");
    expectEq(List.of(1, 2, 3, 4), ids(conn, "SELECT id FROM jdbc_tx ORDER BY id"), "rows seen inside the transaction");
    conn.rollback();
    conn.setAutoCommit(true);
    expectEq(List.of(1, 2), ids(conn, "SELECT id FROM jdbc_tx ORDER BY id"), "rows after rollback");
    expectEq("committed-1", scalarString(conn, "SELECT v FROM jdbc_tx WHERE id = 1"), "rolled-back update undone");
  }

  static void uniqueViolationRollback() throws Exception {
    conn.setAutoCommit(false);
    exec(conn, "INSERT INTO jdbc_tx (id, v) VALUES (10, 'before the error')");
    expectSqlState("23505", () -> {
      try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_tx (id, v) VALUES (?, ?)")) {
        ps.setInt(1, 1);
        ps.setString(2, "duplicate");
        ps.executeUpdate();
      }
    }, "duplicate key");
    expectSqlState("25P02", () -> scalarLong(conn, "SELECT 1"), "statement in the aborted transaction");
    conn.rollback();
    conn.setAutoCommit(true);
    expectEq(1L, scalarLong(conn, "SELECT 1"), "SELECT after rollback");
    expectEq(List.of(1, 2), ids(conn, "SELECT id FROM jdbc_tx ORDER BY id"), "the row inserted before the error is gone");
    exec(conn, "INSERT INTO jdbc_tx (id, v) VALUES (11, 'after the error')");
    expectEq(List.of(1, 2, 11), ids(conn, "SELECT id FROM jdbc_tx ORDER BY id"), "writes work after the rollback");
  }

  /** fetchSize 50 with autocommit off: a named portal fetched 50 rows at a time (PortalSuspended). */
  static void fetchSizeCursor() throws Exception {
    exec(conn, "INSERT INTO jdbc_big (id, payload) SELECT g, 'row-' || g FROM generate_series(1, 1000) AS g");
    conn.setAutoCommit(false);
    try (Statement st = conn.createStatement()) {
      st.setFetchSize(50);
      try (ResultSet rs = st.executeQuery("SELECT id, payload FROM jdbc_big ORDER BY id")) {
        int n = 0;
        while (rs.next()) {
          n++;
          expectEq(n, rs.getInt(1), "id of row " + n);
          expectEq("row-" + n, rs.getString(2), "payload of row " + n);
        }
        expectEq(1000, n, "rows fetched with fetchSize 50");
      }
    }
    // The same through a prepared statement, executed past prepareThreshold.
    try (PreparedStatement ps = conn.prepareStatement("SELECT id FROM jdbc_big WHERE id > ? ORDER BY id")) {
      ps.setFetchSize(50);
      for (int round = 1; round <= 6; round++) {
        ps.setInt(1, round * 100);
        int n = 0;
        try (ResultSet rs = ps.executeQuery()) {
          while (rs.next()) {
            n++;
            expectEq(round * 100 + n, rs.getInt(1), "id in round " + round);
          }
        }
        expectEq(1000 - round * 100, n, "rows in round " + round);
      }
    }
    conn.commit();
    conn.setAutoCommit(true);
  }

  /** A write on the same connection while a fetchSize cursor is still open, then the rest of the cursor. */
  static void cursorInterleavedWrite() throws Exception {
    conn.setAutoCommit(false);
    try (Statement st = conn.createStatement()) {
      st.setFetchSize(50);
      try (ResultSet rs = st.executeQuery("SELECT id FROM jdbc_big ORDER BY id")) {
        int n = 0;
        while (rs.next()) {
          n++;
          expectEq(n, rs.getInt(1), "id of row " + n);
          if (n == 120) exec(conn, "UPDATE jdbc_big SET payload = 'touched' WHERE id % 100 = 0");
        }
        expectEq(1000, n, "rows fetched around the write");
      }
    }
    conn.commit();
    conn.setAutoCommit(true);
    expectEq(10L, scalarLong(conn, "SELECT count(*) FROM jdbc_big WHERE payload = 'touched'"), "rows updated mid-cursor");
  }

  static void byteaRoundTrip(int id, int size) throws Exception {
    byte[] data = new byte[size];
    new Random(0x5eed + id).nextBytes(data);
    try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_blob (id, b) VALUES (?, ?)")) {
      ps.setInt(1, id);
      ps.setBytes(2, data);
      expectEq(1, ps.executeUpdate(), "insert of " + size + " bytes");
    }
    byte[] back;
    try (PreparedStatement ps = conn.prepareStatement("SELECT b, length(b), md5(b) FROM jdbc_blob WHERE id = ?")) {
      ps.setInt(1, id);
      try (ResultSet rs = ps.executeQuery()) {
        expect(rs.next(), "row " + id + " found");
        back = rs.getBytes(1);
        expectEq((long) size, rs.getLong(2), "length(b) on the server");
        expectEq(md5Hex(data), rs.getString(3), "md5(b) on the server");
      }
    }
    expect(back != null, "getBytes returned null");
    expectEq(size, back.length, "bytes read back");
    expect(Arrays.equals(data, back), "bytes read back equal the bytes written");
  }

  static String md5Hex(byte[] data) throws Exception {
    byte[] d = MessageDigest.getInstance("MD5").digest(data);
    StringBuilder sb = new StringBuilder();
    for (byte b : d) sb.append(String.format("%02x", b));
    return sb.toString();
  }

  static void selectForUpdate() throws Exception {
    conn.setAutoCommit(false);
    int qty;
    try (PreparedStatement ps = conn.prepareStatement("SELECT qty FROM jdbc_items WHERE id = ? FOR UPDATE")) {
      ps.setInt(1, 1);
      try (ResultSet rs = ps.executeQuery()) {
        expect(rs.next(), "locked row found");
        qty = rs.getInt(1);
      }
    }
    try (PreparedStatement ps = conn.prepareStatement("UPDATE jdbc_items SET qty = ? WHERE id = ?")) {
      ps.setInt(1, qty + 1);
      ps.setInt(2, 1);
      expectEq(1, ps.executeUpdate(), "update of the locked row");
    }
    conn.commit();
    conn.setAutoCommit(true);
    expectEq(11L, scalarLong(conn, "SELECT qty FROM jdbc_items WHERE id = 1"), "qty after read-modify-write");
  }

  /**
   * While this connection holds FOR UPDATE on a row, another connection's plain FOR UPDATE of
   * that row waits, and goes on (seeing the committed value) once this transaction commits.
   */
  static void forUpdateBlocksOther() throws Exception {
    conn.setAutoCommit(false);
    scalarLong(conn, "SELECT qty FROM jdbc_items WHERE id = 2 FOR UPDATE");
    exec(conn, "UPDATE jdbc_items SET qty = qty + 1 WHERE id = 2");
    ExecutorService pool = Executors.newSingleThreadExecutor();
    try (Connection other = open(new Properties())) {
      Future<Long> waiting = pool.submit(() -> {
        other.setAutoCommit(false);
        long v = scalarLong(other, "SELECT qty FROM jdbc_items WHERE id = 2 FOR UPDATE");
        other.commit();
        return v;
      });
      try {
        Long early = waiting.get(1500, TimeUnit.MILLISECONDS);
        throw new CheckFailed("the other session's FOR UPDATE returned " + early + " while the row was locked");
      } catch (TimeoutException expected) {
        // still waiting for the lock, as it should
      } finally {
        conn.commit();
        conn.setAutoCommit(true);
      }
      expectEq(21L, waiting.get(20, TimeUnit.SECONDS), "the waiting FOR UPDATE sees the committed value");
    } finally {
      pool.shutdownNow();
    }
  }

  /**
   * FOR UPDATE NOWAIT on a row another session has locked fails at once with 55P03
   * (queue consumers rely on it, and on SKIP LOCKED, to never wait).
   */
  static void forUpdateNowait() throws Exception {
    conn.setAutoCommit(false);
    scalarLong(conn, "SELECT qty FROM jdbc_items WHERE id = 4 FOR UPDATE");
    ExecutorService pool = Executors.newSingleThreadExecutor();
    try (Connection other = open(new Properties())) {
      Future<Long> nowait = pool.submit(() -> scalarLong(other, "SELECT qty FROM jdbc_items WHERE id = 4 FOR UPDATE NOWAIT"));
      String problem = null;
      try {
        Long v = nowait.get(5, TimeUnit.SECONDS);
        problem = "FOR UPDATE NOWAIT of a locked row returned " + v + " instead of failing with 55P03";
      } catch (ExecutionException e) {
        Throwable c = e.getCause();
        if (!(c instanceof SQLException) || !"55P03".equals(((SQLException) c).getSQLState())) {
          problem = "FOR UPDATE NOWAIT of a locked row: expected SQLSTATE 55P03, got " + describe(c);
        }
      } catch (TimeoutException e) {
        problem = "FOR UPDATE NOWAIT of a locked row still waiting after 5 s instead of failing with 55P03";
      } finally {
        conn.commit();
        conn.setAutoCommit(true);
      }
      if (problem != null) {
        // Let a blocked NOWAIT finish now that the lock is gone, so the connection closes cleanly.
        try {
          nowait.get(20, TimeUnit.SECONDS);
        } catch (ExecutionException | TimeoutException ignored) {
          // reported below
        }
        throw new CheckFailed(problem);
      }
      expectEq(40L, scalarLong(other, "SELECT qty FROM jdbc_items WHERE id = 4 FOR UPDATE NOWAIT"), "NOWAIT succeeds once the lock is gone");
    } finally {
      pool.shutdownNow();
    }
  }

  /** What ActiveMQ's JDBC store sends; the session default must hold for every later statement. */
  static void sessionCharacteristics() throws Exception {
    exec(conn, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED");
    for (int i = 0; i < 6; i++) {
      expectEq("read uncommitted", scalarString(conn, "SHOW default_transaction_isolation"), "default_transaction_isolation, read " + i);
    }
    expectEq(Connection.TRANSACTION_READ_UNCOMMITTED, conn.getTransactionIsolation(), "getTransactionIsolation()");
    conn.setAutoCommit(false);
    expectEq("read uncommitted", scalarString(conn, "SHOW transaction_isolation"), "isolation inside a transaction");
    exec(conn, "UPDATE jdbc_items SET qty = qty WHERE id = 3");
    conn.commit();
    conn.setAutoCommit(true);
    exec(conn, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED");
    expectEq("read committed", scalarString(conn, "SHOW default_transaction_isolation"), "default restored");
  }

  /** Connection.setTransactionIsolation sends SET SESSION CHARACTERISTICS itself. */
  static void setTransactionIsolation() throws Exception {
    conn.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
    expectEq(Connection.TRANSACTION_SERIALIZABLE, conn.getTransactionIsolation(), "after setTransactionIsolation(SERIALIZABLE)");
    conn.setAutoCommit(false);
    expectEq("serializable", scalarString(conn, "SHOW transaction_isolation"), "isolation inside a transaction");
    exec(conn, "INSERT INTO jdbc_tx (id, v) VALUES (12, 'serializable')");
    conn.commit();
    conn.setAutoCommit(true);
    conn.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
    expectEq("read committed", scalarString(conn, "SHOW default_transaction_isolation"), "default restored");
  }

  /** isValid sends an empty query; connection pools call it constantly. */
  static void isValid() throws Exception {
    for (int i = 0; i < 3; i++) expect(conn.isValid(5), "isValid(5), call " + i);
    conn.setAutoCommit(false);
    exec(conn, "INSERT INTO jdbc_tx (id, v) VALUES (13, 'isValid in a transaction')");
    expect(conn.isValid(5), "isValid(5) inside a transaction");
    conn.commit();
    conn.setAutoCommit(true);
    expectEq(1L, scalarLong(conn, "SELECT count(*) FROM jdbc_tx WHERE id = 13"), "transaction around isValid committed");
  }

  static void emptyQuery() throws Exception {
    try (Statement st = conn.createStatement()) {
      expect(!st.execute(""), "execute(\"\") returns false (no result set)");
      expect(!st.execute(";"), "execute(\";\") returns false");
    }
    try (PreparedStatement ps = conn.prepareStatement("")) {
      for (int i = 0; i < 7; i++) expect(!ps.execute(), "prepared empty query, execution " + i);
    }
    expectEq(1L, scalarLong(conn, "SELECT 1"), "SELECT after the empty queries");
  }

  static void metadata() throws Exception {
    DatabaseMetaData md = conn.getMetaData();
    expectEq("PostgreSQL", md.getDatabaseProductName(), "getDatabaseProductName()");
    expectEq(user, md.getUserName(), "getUserName()");
    Set<String> found = new HashSet<>();
    try (ResultSet rs = md.getTables(null, "public", "jdbc\\_%", new String[] {"TABLE"})) {
      while (rs.next()) found.add(rs.getString("TABLE_NAME"));
    }
    expectEq(new HashSet<>(Arrays.asList(TABLES)), found, "getTables(public, jdbc_%)");
    List<String> cols = new ArrayList<>();
    try (ResultSet rs = md.getColumns(null, "public", "jdbc_items", null)) {
      while (rs.next()) cols.add(rs.getString("COLUMN_NAME"));
    }
    expectEq(List.of("id", "name", "qty"), cols, "getColumns(jdbc_items)");
    List<String> pk = new ArrayList<>();
    try (ResultSet rs = md.getPrimaryKeys(null, "public", "jdbc_items")) {
      while (rs.next()) pk.add(rs.getString("COLUMN_NAME"));
    }
    expectEq(List.of("id"), pk, "getPrimaryKeys(jdbc_items)");
  }

  static void closeConnection() throws Exception {
    conn.close();
    expect(conn.isClosed(), "isClosed() after close()");
    // A fresh connection sees everything the checks committed.
    try (Connection c = open(new Properties())) {
      expectEq(15L, scalarLong(c, "SELECT count(*) FROM jdbc_items"), "jdbc_items rows");
      expectEq(2000L, scalarLong(c, "SELECT count(*) FROM jdbc_batch"), "jdbc_batch rows");
      expectEq(List.of(1, 2, 11, 12, 13), ids(c, "SELECT id FROM jdbc_tx ORDER BY id"), "jdbc_tx rows");
      expectEq(2L, scalarLong(c, "SELECT count(*) FROM jdbc_blob"), "jdbc_blob rows");
    }
  }
}
