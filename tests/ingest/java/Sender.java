import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;

public class Sender {
    public static void main(String[] args) throws Exception {
        // Default settings, as an integrator would write it: HTTP/2 preferred, so every
        // request on http:// carries "Connection: Upgrade, HTTP2-Settings" and "Upgrade: h2c".
        HttpClient client = HttpClient.newHttpClient();
        String body = Files.readString(Path.of(args[1]));
        for (int i = 0; i < 5; i++) {
            HttpRequest request = HttpRequest.newBuilder(URI.create(args[0]))
                .header("token", args[2])
                .header("Content-Type", "application/json;charset=UTF-8")
                .POST(HttpRequest.BodyPublishers.ofString(body.replace("CALLID", "java-" + i)))
                .build();
            HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
            System.out.println(response.statusCode() + " " + response.body());
        }
        // A streamed body: the JDK sends it chunked, without Content-Length.
        HttpRequest chunked = HttpRequest.newBuilder(URI.create(args[0]))
            .header("token", args[2])
            .header("Content-Type", "application/json;charset=UTF-8")
            .POST(HttpRequest.BodyPublishers.ofInputStream(
                () -> new java.io.ByteArrayInputStream(
                    body.replace("CALLID", "java-chunked").getBytes(java.nio.charset.StandardCharsets.UTF_8))))
            .build();
        HttpResponse<String> response = client.send(chunked, HttpResponse.BodyHandlers.ofString());
        System.out.println(response.statusCode() + " " + response.body());
        // Expect: 100-continue, which uvicorn's httptools path hung on with the h2c offer.
        for (int i = 0; i < 5; i++) {
            HttpRequest expecting = HttpRequest.newBuilder(URI.create(args[0]))
                .header("token", args[2])
                .header("Content-Type", "application/json;charset=UTF-8")
                .expectContinue(true)
                .timeout(java.time.Duration.ofSeconds(20))
                .POST(HttpRequest.BodyPublishers.ofString(body.replace("CALLID", "java-expect-" + i)))
                .build();
            HttpResponse<String> reply = client.send(expecting, HttpResponse.BodyHandlers.ofString());
            System.out.println(reply.statusCode() + " " + reply.body());
        }
    }
}
