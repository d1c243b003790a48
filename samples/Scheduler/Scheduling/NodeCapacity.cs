namespace Netcore.Scheduler.Scheduling;

/// <summary>What one job needs from the node while it runs.</summary>
/// <param name="Vcpus">vCPU slots (a sandboxed function has one vCPU; a microVM its VcpuCount).</param>
/// <param name="MemoryBytes">Guest memory the job may touch.</param>
internal readonly record struct Demand(int Vcpus, long MemoryBytes);

/// <summary>
/// Admission against the node: a job starts only when its vCPUs fit in the free slots and its guest
/// memory in the free memory. Reservations are released when the job ends, however it ends.
/// Not thread-safe: the scheduler holds its lock around every call.
/// </summary>
internal sealed class NodeCapacity
{
    public NodeCapacity(int vcpuSlots, long memoryBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(vcpuSlots, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(memoryBytes, 1);
        VcpuSlots = vcpuSlots;
        MemoryBytes = memoryBytes;
    }

    /// <summary>vCPU slots of the node.</summary>
    public int VcpuSlots { get; }

    /// <summary>Guest memory the node gives to jobs.</summary>
    public long MemoryBytes { get; }

    /// <summary>Slots in use.</summary>
    public int UsedVcpus { get; private set; }

    /// <summary>Memory reserved.</summary>
    public long UsedMemory { get; private set; }

    /// <summary>True when a job with <paramref name="d"/> could ever run on this node (when it is empty).</summary>
    public bool CanEverFit(Demand d) => d.Vcpus <= VcpuSlots && d.MemoryBytes <= MemoryBytes;

    /// <summary>True when <paramref name="d"/> fits now.</summary>
    public bool Fits(Demand d) => UsedVcpus + d.Vcpus <= VcpuSlots && UsedMemory + d.MemoryBytes <= MemoryBytes;

    /// <summary>Reserves <paramref name="d"/>; false (and nothing reserved) when it does not fit.</summary>
    public bool TryReserve(Demand d)
    {
        if (d.Vcpus < 0 || d.MemoryBytes < 0 || !Fits(d))
            return false;
        UsedVcpus += d.Vcpus;
        UsedMemory += d.MemoryBytes;
        return true;
    }

    /// <summary>Returns a reservation made by <see cref="TryReserve"/>.</summary>
    public void Release(Demand d)
    {
        if (d.Vcpus > UsedVcpus || d.MemoryBytes > UsedMemory)
            throw new InvalidOperationException("released more than was reserved");
        UsedVcpus -= d.Vcpus;
        UsedMemory -= d.MemoryBytes;
    }
}
