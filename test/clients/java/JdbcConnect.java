// Connects with a JDBC URL (user and password as arguments), runs SELECT 1 and prints "ok 1",
// or prints the SQLState and message of the failure and exits 1. Run in source-file mode:
// java -cp postgresql.jar JdbcConnect.java URL USER PASSWORD
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;

public class JdbcConnect {
    public static void main(String[] args) throws ClassNotFoundException {
        Class.forName("org.postgresql.Driver"); // source-file mode does not load drivers from the class path by itself
        try (Connection c = DriverManager.getConnection(args[0], args[1], args[2]);
             ResultSet r = c.createStatement().executeQuery("SELECT 1")) {
            r.next();
            System.out.println("ok " + r.getInt(1));
        } catch (SQLException e) {
            System.out.println("error " + e.getSQLState() + " " + e.getMessage());
            System.exit(1);
        }
    }
}
