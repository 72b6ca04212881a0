import java.io.InputStream;
import java.net.Authenticator;
import java.net.HttpURLConnection;
import java.net.PasswordAuthentication;
import java.net.URL;

/** GET a URL through NTLM with java.net.HttpURLConnection; prints status and body. */
public class NtlmGet {
    public static void main(String[] args) throws Exception {
        final String user = args[1];
        final String password = args[2];
        Authenticator.setDefault(new Authenticator() {
            @Override
            protected PasswordAuthentication getPasswordAuthentication() {
                return new PasswordAuthentication(user, password.toCharArray());
            }
        });
        HttpURLConnection c = (HttpURLConnection) new URL(args[0]).openConnection();
        int status = c.getResponseCode();
        InputStream in = status < 400 ? c.getInputStream() : c.getErrorStream();
        String body = in == null ? "" : new String(in.readAllBytes(), "UTF-8");
        System.out.println("{\"status\":" + status + ",\"body\":" + (body.startsWith("{") ? body : "\"\"") + "}");
    }
}
