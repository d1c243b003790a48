using System.Net;
using System.Net.Sockets;
using Netcore.LoadBalancer.DataPlane;

namespace Netcore.LoadBalancer.Control;

/// <summary>Kind of a backend health check.</summary>
internal enum HealthCheckKind
{
    /// <summary>A TCP connection to the backend's address and port must complete.</summary>
    Tcp,

    /// <summary>An HTTP/1.1 GET of the path must answer 2xx or 3xx.</summary>
    Http,
}

/// <summary>A health check of a service's backends (interval, timeout, rise/fall as in HAProxy/Katran).</summary>
internal sealed record HealthCheckSpec(HealthCheckKind Kind, int Port, string Path, int IntervalMs, int TimeoutMs, int Rise, int Fall);

/// <summary>A virtual service: (VIP, port, protocol), its encapsulation and health check.</summary>
internal sealed record ServiceSpec(string Name, IPAddress Vip, ushort Port, ProtocolType Protocol, Encapsulation Encap, ushort GuePort, HealthCheckSpec? HealthCheck)
{
    /// <summary>The service key (lb_vips).</summary>
    public LbServiceKey Key => LbServiceKey.Create(Vip, Port, Protocol);

    /// <summary>"tcp" or "udp".</summary>
    public string ProtocolName => Protocol == ProtocolType.Tcp ? "tcp" : "udp";

    /// <summary>"ipip" or "gue".</summary>
    public string EncapName => Encap == Encapsulation.Gue ? "gue" : "ipip";
}

/// <summary>A stored backend of a service.</summary>
internal sealed record BackendSpec(string Service, IPAddress Address, uint Id, int Weight, bool Drained);

/// <summary>A stored service with its data-plane id.</summary>
internal sealed record StoredService(ServiceSpec Spec, uint Id);

/// <summary>Health of a backend as the control plane sees it.</summary>
internal enum BackendHealth
{
    /// <summary>No health check configured: the backend counts as up.</summary>
    Unchecked,

    /// <summary>Passing (or not yet failed <c>fall</c> times since start).</summary>
    Up,

    /// <summary>Failed <c>fall</c> consecutive checks and has not passed <c>rise</c> since.</summary>
    Down,
}

/// <summary>Why a configuration request was refused; the API maps it to an HTTP status.</summary>
internal enum ConfigErrorKind
{
    /// <summary>400: a field is missing or invalid.</summary>
    Invalid,

    /// <summary>404: the service or backend does not exist.</summary>
    NotFound,

    /// <summary>409: conflicts with another service or a limit.</summary>
    Conflict,
}

/// <summary>A refused configuration request, naming the field at fault.</summary>
internal sealed class ConfigException(ConfigErrorKind kind, string field, string message) : Exception(message)
{
    /// <summary>What went wrong.</summary>
    public ConfigErrorKind Kind { get; } = kind;

    /// <summary>The request field (or path segment) at fault.</summary>
    public string Field { get; } = field;

    /// <summary>A 400 naming the field.</summary>
    public static ConfigException Invalid(string field, string message) => new(ConfigErrorKind.Invalid, field, $"{field}: {message}");
}
