// JSch (Debian's libjsch-java; older Android apps): one login and the stack check's file work
// (see tests/integration/server_stacks.rs). Run as a source file: java -cp jsch.jar StackJsch.java
// usage: StackJsch HOST PORT USER key:PATH|password:PW LOCAL REMOTE
import com.jcraft.jsch.ChannelSftp;
import com.jcraft.jsch.JSch;
import com.jcraft.jsch.Session;
import java.util.Vector;

public class StackJsch {
    public static void main(String[] a) throws Exception {
        String host = a[0], user = a[2], auth = a[3], local = a[4], remote = a[5];
        JSch jsch = new JSch();
        if (auth.startsWith("key:")) jsch.addIdentity(auth.substring(4));
        Session s = jsch.getSession(user, host, Integer.parseInt(a[1]));
        if (auth.startsWith("password:")) s.setPassword(auth.substring(9));
        s.setConfig("StrictHostKeyChecking", "no");
        s.setConfig("PreferredAuthentications", auth.startsWith("key:") ? "publickey" : "password");
        s.connect(30000);
        ChannelSftp c = (ChannelSftp) s.openChannel("sftp");
        c.connect(30000);
        c.mkdir(remote);
        c.put(local + "/up.bin", remote + "/up.bin");
        Vector<?> ls = c.ls(remote);
        for (Object o : ls) {
            String n = ((ChannelSftp.LsEntry) o).getFilename();
            if (!n.equals(".") && !n.equals("..")) System.out.println("ls: " + n);
        }
        c.rename(remote + "/up.bin", remote + "/moved.bin");
        c.get(remote + "/moved.bin", local + "/back.bin");
        c.mkdir(remote + "/sub");
        c.rmdir(remote + "/sub");
        c.put(local + "/small.txt", remote + "/small.txt");
        c.rm(remote + "/small.txt");
        c.disconnect();
        s.disconnect();
        System.out.println("ok JSch " + JSch.VERSION + " via " + s.getServerVersion());
    }
}
