using System.Runtime.InteropServices;
using Netcore.Interop;

namespace Netcore.Vm.Kvm;

/// <summary>
/// The KVM subsystem (/dev/kvm): API version, capabilities, supported CPUID and MSRs, and the
/// factory for <see cref="VirtualMachine"/>. One instance can create many VMs and may be shared
/// between threads.
/// </summary>
public sealed unsafe class KvmSystem : IDisposable
{
    private readonly KvmFd _fd;
    private KvmCpuidEntry[]? _supportedCpuid;

    // KVM_CHECK_EXTENSION answers on the /dev/kvm fd, cached for the checks made on every VM
    // (TSS, irqchip, PIT): 0 = not asked yet, otherwise the answer + 1. The answers of the system
    // fd are fixed while the module is loaded (Documentation/virt/kvm/api.rst 4.4).
    private readonly int[] _extensionCache = new int[ExtensionCacheSize];
    private const int ExtensionCacheSize = 256;

    private KvmSystem(KvmFd fd)
    {
        _fd = fd;
        ApiVersion = _fd.Ioctl(KvmIoctl.KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION");
        // linux/kvm.h: "KVM_API_VERSION 12" - every other value means an incompatible ABI.
        if (ApiVersion != KvmIoctl.KVM_API_VERSION)
            throw new KvmNotSupportedException($"KVM API version {ApiVersion} (this library speaks version {KvmIoctl.KVM_API_VERSION})");
        VcpuMmapSize = _fd.Ioctl(KvmIoctl.KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
        if (VcpuMmapSize < KvmIoctl.RunSize)
            throw new KvmNotSupportedException($"kvm_run area of {VcpuMmapSize} bytes is smaller than struct kvm_run ({KvmIoctl.RunSize})");
    }

    /// <summary>Opens /dev/kvm (or <paramref name="path"/>) and checks the API version.</summary>
    /// <exception cref="KvmIoctlException">The device cannot be opened (errno ENOENT, EACCES...).</exception>
    public static KvmSystem Open(string path = "/dev/kvm")
    {
        int fd = Libc.open(path, LinuxConstants.O_RDWR | LinuxConstants.O_CLOEXEC);
        KvmFd handle = KvmFd.FromResult(fd, $"open({path})");
        try
        {
            return new KvmSystem(handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>KVM_GET_API_VERSION (always 12 once opened).</summary>
    public int ApiVersion { get; }

    /// <summary>KVM_GET_VCPU_MMAP_SIZE: bytes to map from each vCPU fd (kvm_run plus the PIO page).</summary>
    public int VcpuMmapSize { get; }

    internal KvmFd Handle => _fd;

    /// <summary>KVM_CHECK_EXTENSION: 0 when the capability is absent, otherwise a positive value (often a count).</summary>
    public int CheckExtension(KvmCapability capability) =>
        _fd.Ioctl(KvmIoctl.KVM_CHECK_EXTENSION, (nint)capability, $"KVM_CHECK_EXTENSION({capability})");

    /// <summary>
    /// <see cref="CheckExtension"/> asked once per capability and remembered, for checks that run on
    /// every VM (one ioctl per process instead of one per VM).
    /// </summary>
    internal int CachedExtension(KvmCapability capability)
    {
        int i = (int)capability;
        if ((uint)i >= ExtensionCacheSize)
            return CheckExtension(capability);
        int cached = Volatile.Read(ref _extensionCache[i]);
        if (cached != 0)
            return cached - 1;
        int answer = CheckExtension(capability);
        Volatile.Write(ref _extensionCache[i], answer + 1);
        return answer;
    }

    /// <summary>Throws <see cref="KvmNotSupportedException"/> naming <paramref name="capability"/> when it is absent.</summary>
    public void Require(KvmCapability capability)
    {
        if (CheckExtension(capability) <= 0)
            throw new KvmNotSupportedException($"the capability KVM_CAP_{capability} is absent");
    }

    /// <summary>
    /// KVM_GET_SUPPORTED_CPUID. The kernel answers E2BIG while the buffer is too small, so the
    /// buffer starts at <paramref name="initialEntries"/> and doubles until it fits (up to 4096).
    /// </summary>
    public KvmCpuidEntry[] GetSupportedCpuid(int initialEntries = 64)
    {
        if (initialEntries == 64 && _supportedCpuid is { } cached)
            return (KvmCpuidEntry[])cached.Clone();
        KvmCpuidEntry[] result = GetCountedArray<KvmCpuidEntry>(KvmIoctl.KVM_GET_SUPPORTED_CPUID, "KVM_GET_SUPPORTED_CPUID", initialEntries, out int attempts);
        LastCpuidAttempts = attempts;
        if (initialEntries == 64)
            _supportedCpuid = (KvmCpuidEntry[])result.Clone();
        return result;
    }

    /// <summary>How many calls the last uncached <see cref="GetSupportedCpuid"/> needed (more than 1 means the buffer grew).</summary>
    public int LastCpuidAttempts { get; private set; }

    /// <summary>KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and restores.</summary>
    public uint[] GetMsrIndexList() => GetCountedArray<uint>(KvmIoctl.KVM_GET_MSR_INDEX_LIST, "KVM_GET_MSR_INDEX_LIST", 64, out _);

    private T[] GetCountedArray<T>(uint request, string call, int initial, out int attempts) where T : unmanaged
    {
        int n = Math.Max(1, initial);
        attempts = 0;
        while (true)
        {
            attempts++;
            int bytes = sizeof(kvm_count_header) + n * sizeof(T);
            byte* buf = (byte*)NativeMemory.AllocZeroed((nuint)bytes);
            try
            {
                ((kvm_count_header*)buf)->count = (uint)n;
                Errno e = _fd.TryIoctl(request, buf, out _);
                if (e == Errno.E2BIG && n < 4096)
                {
                    // KVM writes the needed count back for the MSR list; CPUID does not, so double.
                    int wanted = (int)((kvm_count_header*)buf)->count;
                    n = wanted > n ? wanted : n * 2;
                    continue;
                }
                if (e != Errno.None)
                    throw new KvmIoctlException(call, e);
                int count = (int)((kvm_count_header*)buf)->count;
                return new ReadOnlySpan<T>(buf + sizeof(kvm_count_header), count).ToArray();
            }
            finally
            {
                NativeMemory.Free(buf);
            }
        }
    }

    /// <summary>KVM_CREATE_VM: a new VM with no memory and no vCPUs.</summary>
    public VirtualMachine CreateVm(VirtualMachineOptions? options = null) => new(this, options ?? new VirtualMachineOptions());

    /// <inheritdoc />
    public void Dispose() => _fd.Dispose();
}
