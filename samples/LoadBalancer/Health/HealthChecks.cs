using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Netcore.LoadBalancer.Control;

namespace Netcore.LoadBalancer.Health;

/// <summary>
/// Rise/fall hysteresis: the state turns Down after <c>fall</c> consecutive failures and Up after
/// <c>rise</c> consecutive successes; a result that agrees with the current state resets the
/// opposite streak. It starts Up, so a daemon that restarts does not pull every backend out of
/// the table (and move flows) before the first checks have run.
/// </summary>
internal sealed class HealthStateMachine(int rise, int fall, bool up = true)
{
    private int _ok, _failed;

    /// <summary>Current state (initially <c>up</c>: a restarted daemon starts a backend that was down as down).</summary>
    public bool Up { get; private set; } = up;

    /// <summary>Consecutive results in the current streak (successes when positive, failures when negative).</summary>
    public int Streak => _ok > 0 ? _ok : -_failed;

    /// <summary>Feeds one check result; returns true when the state changed.</summary>
    public bool Observe(bool success)
    {
        if (success)
        {
            _failed = 0;
            _ok++;
            if (!Up && _ok >= rise)
            {
                Up = true;
                return true;
            }
        }
        else
        {
            _ok = 0;
            _failed++;
            if (Up && _failed >= fall)
            {
                Up = false;
                return true;
            }
        }
        return false;
    }
}

/// <summary>One TCP or HTTP probe.</summary>
internal static class HealthProbe
{
    private static readonly HttpClient Http = new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        PooledConnectionLifetime = TimeSpan.Zero, // every check opens its own connection
    });

    /// <summary>A TCP check: the three-way handshake completes within the timeout.</summary>
    public static async Task<bool> TcpAsync(IPEndPoint target, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        using var s = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await s.ConnectAsync(target, cts.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>An HTTP check: GET answered 2xx or 3xx (RFC 9110 15.3/15.4) within the timeout.</summary>
    public static async Task<bool> HttpAsync(Uri uri, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            using var req = new HttpRequestMessage(HttpMethod.Get, uri);
            req.Headers.ConnectionClose = true;
            req.Headers.UserAgent.ParseAdd("netcore-lb-health/1");
            using var resp = await Http.SendAsync(req, HttpCompletionOption.ResponseHeadersRead, cts.Token).ConfigureAwait(false);
            int code = (int)resp.StatusCode;
            return code is >= 200 and < 400;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>Runs the check of <paramref name="spec"/> against <paramref name="address"/>.</summary>
    public static Task<bool> RunAsync(HealthCheckSpec spec, IPAddress address, CancellationToken cancellationToken)
    {
        var timeout = TimeSpan.FromMilliseconds(spec.TimeoutMs);
        if (spec.Kind == HealthCheckKind.Tcp)
            return TcpAsync(new IPEndPoint(address, spec.Port), timeout, cancellationToken);
        string host = address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
        return HttpAsync(new Uri($"http://{host}:{spec.Port}{spec.Path}"), timeout, cancellationToken);
    }

    /// <summary>Parses --node-check: <c>tcp:IP:PORT</c> or an http:// URL.</summary>
    public static Func<CancellationToken, Task<bool>> ParseNodeCheck(string text, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.StartsWith("http://", StringComparison.Ordinal) && Uri.TryCreate(text, UriKind.Absolute, out var uri))
            return ct => HttpAsync(uri, timeout, ct);
        if (text.StartsWith("tcp:", StringComparison.Ordinal) && IPEndPoint.TryParse(text[4..], out var ep) && ep.Port != 0)
            return ct => TcpAsync(ep, timeout, ct);
        throw new ArgumentException($"--node-check: '{text}' is neither tcp:IP:PORT nor an http:// URL");
    }
}

/// <summary>
/// A periodic check with rise/fall: runs <c>probe</c> every interval and reports state changes.
/// </summary>
internal sealed partial class HealthCheckLoop : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _task;

    public HealthCheckLoop(string name, Func<CancellationToken, Task<bool>> probe, TimeSpan interval, int rise, int fall, Action<bool> onChange, ILogger logger, bool initiallyUp = true)
    {
        Machine = new HealthStateMachine(rise, fall, initiallyUp);
        _task = RunAsync(name, probe, interval, onChange, logger, _stop.Token);
    }

    /// <summary>The hysteresis state.</summary>
    public HealthStateMachine Machine { get; }

    /// <summary>Results so far.</summary>
    public long Checks { get; private set; }

    private async Task RunAsync(string name, Func<CancellationToken, Task<bool>> probe, TimeSpan interval, Action<bool> onChange, ILogger logger, CancellationToken ct)
    {
        await Task.Yield();
        using var timer = new PeriodicTimer(interval);
        try
        {
            do
            {
                long t0 = Stopwatch.GetTimestamp();
                bool ok = await probe(ct).ConfigureAwait(false);
                Checks++;
                bool changed;
                lock (Machine)
                    changed = Machine.Observe(ok);
                if (changed)
                {
                    LogChanged(logger, name, Machine.Up ? "up" : "down", Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                    onChange(Machine.Up);
                }
            }
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _task.ConfigureAwait(false);
        _stop.Dispose();
    }

    [LoggerMessage(EventId = 20, Level = LogLevel.Warning, Message = "Health of {Name} is now {State} (last check took {Ms:F1} ms)")]
    private static partial void LogChanged(ILogger logger, string name, string state, double ms);
}
