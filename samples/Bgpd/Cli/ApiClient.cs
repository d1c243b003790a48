using System.CommandLine;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Netcore.Bgpd.Cli;

/// <summary>
/// The CLI's side of the REST API: the <c>--api</c>/<c>--token</c> options every command shares, and one
/// request that prints the API's error (status and its <c>error</c> text) on stderr and gives the exit code:
/// 0 done, 1 the API refused or cannot be reached, 2 a bad <c>--api</c>.
/// </summary>
internal static class ApiClient
{
    /// <summary>The default API address (the configuration's default).</summary>
    public const string DefaultApi = "127.0.0.1:3179";

    /// <summary>A fresh <c>--api</c> option (recursive: it applies to the subcommands).</summary>
    public static Option<string> ApiOption() =>
        new("--api") { Description = "The daemon's API address:port", DefaultValueFactory = _ => DefaultApi, Recursive = true };

    /// <summary>A fresh <c>--token</c> option (recursive).</summary>
    public static Option<string?> TokenOption() =>
        new("--token") { Description = "Bearer token (default: $BGPD_TOKEN)", Recursive = true };

    /// <summary>
    /// Sends one request; on success returns the parsed body (an empty document for 204) and 0, otherwise
    /// null and the exit code after printing why on stderr.
    /// </summary>
    public static async Task<(JsonDocument? Doc, int Code)> SendAsync(HttpMethod method, string api, string? token, string path, string? jsonBody, CancellationToken ct)
    {
        token ??= Environment.GetEnvironmentVariable("BGPD_TOKEN");
        if (!IPEndPoint.TryParse(api, out var ep))
        {
            await Console.Error.WriteLineAsync($"bgpd: --api '{api}' is not address:port").ConfigureAwait(false);
            return (null, 2);
        }
        using var http = new HttpClient { BaseAddress = new Uri($"http://{ep}/"), Timeout = TimeSpan.FromSeconds(30) };
        if (!string.IsNullOrEmpty(token))
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var request = new HttpRequestMessage(method, new Uri(path, UriKind.Relative));
        if (jsonBody is not null)
            request.Content = new StringContent(jsonBody, Encoding.UTF8, "application/json");
        HttpResponseMessage resp;
        try
        {
            resp = await http.SendAsync(request, ct).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            await Console.Error.WriteLineAsync($"bgpd: cannot reach the API at {ep}: {e.Message} (is the daemon running with \"api\" configured?)").ConfigureAwait(false);
            return (null, 1);
        }
        using (resp)
        {
            string body = await resp.Content.ReadAsStringAsync(ct).ConfigureAwait(false);
            if (!resp.IsSuccessStatusCode)
            {
                string why = body;
                try
                {
                    using var err = JsonDocument.Parse(body);
                    why = err.RootElement.GetProperty("error").GetString() ?? body;
                }
                catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
                {
                    // not our JSON error body: print it as it is
                }
                await Console.Error.WriteLineAsync($"bgpd: {(int)resp.StatusCode} {resp.ReasonPhrase}: {why.Trim()}").ConfigureAwait(false);
                return (null, 1);
            }
            return (JsonDocument.Parse(body.Length == 0 ? "{}" : body), 0);
        }
    }
}
