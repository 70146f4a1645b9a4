// Trilead SSH-2 for Java (Jenkins' fork; ConnectBot's sshlib comes from it): one login and the
// stack check's file work (see tests/integration/server_stacks.rs).
// usage: StackTrilead HOST PORT USER key:PATH|password:PW LOCAL REMOTE
import com.trilead.ssh2.Connection;
import com.trilead.ssh2.SFTPv3Client;
import com.trilead.ssh2.SFTPv3DirectoryEntry;
import com.trilead.ssh2.SFTPv3FileHandle;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;

public class StackTrilead {
    static void put(SFTPv3Client c, String from, String to) throws Exception {
        SFTPv3FileHandle h = c.createFileTruncate(to);
        try (FileInputStream in = new FileInputStream(from)) {
            byte[] buf = new byte[32768];
            long off = 0;
            for (int n; (n = in.read(buf)) > 0; off += n) c.write(h, off, buf, 0, n);
        }
        c.closeFile(h);
    }

    static void get(SFTPv3Client c, String from, String to) throws Exception {
        SFTPv3FileHandle h = c.openFileRO(from);
        try (FileOutputStream out = new FileOutputStream(to)) {
            byte[] buf = new byte[32768];
            long off = 0;
            for (int n; (n = c.read(h, off, buf, 0, buf.length)) > 0; off += n) out.write(buf, 0, n);
        }
        c.closeFile(h);
    }

    public static void main(String[] a) throws Exception {
        String user = a[2], auth = a[3], local = a[4], remote = a[5];
        Connection conn = new Connection(a[0], Integer.parseInt(a[1]));
        conn.connect(null, 30000, 30000);
        boolean in = auth.startsWith("key:")
            ? conn.authenticateWithPublicKey(user, new File(auth.substring(4)), null)
            : conn.authenticateWithPassword(user, auth.substring(9));
        if (!in) throw new Exception("login refused");
        SFTPv3Client c = new SFTPv3Client(conn);
        c.mkdir(remote, 0755);
        put(c, local + "/up.bin", remote + "/up.bin");
        for (Object o : c.ls(remote)) {
            String n = ((SFTPv3DirectoryEntry) o).filename;
            if (!n.equals(".") && !n.equals("..")) System.out.println("ls: " + n);
        }
        c.mv(remote + "/up.bin", remote + "/moved.bin");
        get(c, remote + "/moved.bin", local + "/back.bin");
        c.mkdir(remote + "/sub", 0755);
        c.rmdir(remote + "/sub");
        put(c, local + "/small.txt", remote + "/small.txt");
        c.rm(remote + "/small.txt");
        c.close();
        conn.close();
        System.out.println("ok Trilead");
    }
}
