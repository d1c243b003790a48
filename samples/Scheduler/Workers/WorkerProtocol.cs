using System.Text.Json;
using System.Text.Json.Serialization;

namespace Netcore.Scheduler.Workers;

/// <summary>
/// The daemon-worker protocol: one JSON object per line on the worker's stdin (requests) and
/// stdout (the "ready" line, then one response per run). byte[] fields are base64 (System.Text.Json).
/// A worker runs one job at a time; "cancel" may arrive while it runs.
/// </summary>
internal static class WorkerProtocol
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>Bytes of output a job may produce (host call 1 for functions, the console for microVMs).</summary>
    public const int MaxOutputBytes = 64 << 10;

    public static string Encode<T>(T message) => JsonSerializer.Serialize(message, Json);

    public static T Decode<T>(string line) => JsonSerializer.Deserialize<T>(line, Json) ?? throw new JsonException("null message");
}

/// <summary>The first line a worker prints, once it is in its cgroup and has opened /dev/kvm.</summary>
internal sealed record WorkerReady(int Pid, string? Cgroup);

/// <summary>A request to a worker. Op: "run", "cancel" (Id of the running job) or "exit".</summary>
internal sealed record WorkerRequest(string Op, long Id)
{
    public string? Kind { get; init; }
    public byte[]? Image { get; init; }
    public byte[]? Input { get; init; }
    public int TimeoutMs { get; init; }
    public int MemoryMb { get; init; }
    public string? KernelPath { get; init; }
    public string? InitrdPath { get; init; }
    public string? CommandLine { get; init; }
    public int Vcpus { get; init; } = 1;
}

/// <summary>How a run ended, as the worker saw it.</summary>
internal enum RunStatus
{
    Succeeded,
    TimedOut,
    Faulted,
    Failed,
    Cancelled,
}

/// <summary>The answer to a "run".</summary>
internal sealed record WorkerResponse(long Id, RunStatus Status)
{
    public ulong Result { get; init; }
    public byte[]? Output { get; init; }
    public string? Message { get; init; }
    public double GuestMs { get; init; }
    /// <summary>CPU time the worker process used during the run (guest time included: KVM accounts it to the vCPU thread).</summary>
    public double CpuMs { get; init; }
    public bool Cold { get; init; }
    public int HostCalls { get; init; }
}
