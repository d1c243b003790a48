using System.Diagnostics.Metrics;

namespace Netcore.Egress.Proxy;

/// <summary>Why a proxy request did not become a tunnel.</summary>
internal enum ProxyFailure
{
    /// <summary>Not a CONNECT/GET request we understand (400, 405).</summary>
    BadRequest,
    /// <summary>The upstream refused or was unreachable (502).</summary>
    Connect,
    /// <summary>The upstream did not answer in time (504).</summary>
    Timeout,
    /// <summary>The kernel picked a source port outside this machine's range (502; a configuration error).</summary>
    PortOutOfRange,
}

/// <summary>
/// Proxy counts, kept for /metrics and published on the <c>Netcore.Egress</c> meter
/// (System.Diagnostics.Metrics) for OpenTelemetry and dotnet-counters.
/// </summary>
internal sealed class ProxyStats : IDisposable
{
    private readonly Meter _meter = new("Netcore.Egress");
    private readonly Counter<long> _tunnels;
    private readonly Counter<long> _failures;
    private readonly Counter<long> _bytes;
    private long _opened, _active, _bytesUp, _bytesDown;
    private readonly long[] _failed = new long[4];

    public ProxyStats()
    {
        _tunnels = _meter.CreateCounter<long>("netcore.egress.tunnels", description: "CONNECT tunnels opened");
        _failures = _meter.CreateCounter<long>("netcore.egress.tunnel_failures", description: "CONNECT requests that failed, by reason");
        _bytes = _meter.CreateCounter<long>("netcore.egress.bytes", "By", "Bytes through tunnels, by direction");
        _meter.CreateObservableUpDownCounter("netcore.egress.tunnels_active", () => Interlocked.Read(ref _active), description: "Tunnels open now");
    }

    public long Opened => Interlocked.Read(ref _opened);

    public long Active => Interlocked.Read(ref _active);

    public long BytesUp => Interlocked.Read(ref _bytesUp);

    public long BytesDown => Interlocked.Read(ref _bytesDown);

    public long Failed(ProxyFailure f) => Interlocked.Read(ref _failed[(int)f]);

    public void TunnelOpened()
    {
        Interlocked.Increment(ref _opened);
        Interlocked.Increment(ref _active);
        _tunnels.Add(1);
    }

    public void TunnelClosed() => Interlocked.Decrement(ref _active);

    public void Fail(ProxyFailure f)
    {
        Interlocked.Increment(ref _failed[(int)f]);
        _failures.Add(1, new KeyValuePair<string, object?>("reason", Name(f)));
    }

    public void Bytes(bool up, long n)
    {
        Interlocked.Add(ref up ? ref _bytesUp : ref _bytesDown, n);
        _bytes.Add(n, new KeyValuePair<string, object?>("direction", up ? "up" : "down"));
    }

    public static string Name(ProxyFailure f) => f switch
    {
        ProxyFailure.BadRequest => "bad_request",
        ProxyFailure.Connect => "connect",
        ProxyFailure.Timeout => "timeout",
        _ => "port_out_of_range",
    };

    public void Dispose() => _meter.Dispose();
}
