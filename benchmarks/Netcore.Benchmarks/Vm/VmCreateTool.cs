using System.Diagnostics;
using System.Globalization;
using Netcore.Vm.Guest;
using Netcore.Vm.Kvm;
using Netcore.Vm.Memory;
using Netcore.Vm.Sandboxing;

namespace Netcore.Benchmarks.Vm;

/// <summary>
/// Workload of benchmarks/compare/vm-create.sh: VM create/run-to-first-exit/destroy, sequential and
/// 2-way parallel, and the exit round trip. benchmarks/compare/vm-create.sh builds a C program that does the same with raw ioctls.
/// </summary>
public static class VmCreateTool
{
    // Real mode: out 0x10, al; hlt - the first exit is the port write.
    private static readonly byte[] FirstExitGuest = [0xE6, 0x10, 0xF4];

    [Tool("vm-create", "VM create/run/destroy and exit round trip with Netcore.Vm: vm-create <iterations> <exits>")]
    public static int Run(string[] args)
    {
        int n = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 2000;
        int exits = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 200_000;
        using var kvm = KvmSystem.Open();
        // Warm up the kernel's caches (50 VMs, as the C program does) and the JIT: tiered compilation
        // promotes a method after 30 calls and a 100 ms delay, so keep going for 500 ms so that the
        // timed VMs run the optimized code rather than the first-tier code being replaced meanwhile.
        var warmup = Stopwatch.StartNew();
        for (int i = 0; i < 50 || warmup.ElapsedMilliseconds < 500; i++)
            CreateRunDestroy(kvm);

        double[] lat = new double[n];
        var total = Stopwatch.StartNew();
        for (int i = 0; i < n; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            CreateRunDestroy(kvm);
            lat[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
        }
        double seqSeconds = total.Elapsed.TotalSeconds;
        Array.Sort(lat);

        var par = Stopwatch.StartNew();
        var threads = Enumerable.Range(0, 2).Select(_ => new Thread(() =>
        {
            for (int i = 0; i < n / 2; i++)
                CreateRunDestroy(kvm);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        double parSeconds = par.Elapsed.TotalSeconds;

        double exitNs = ExitRoundTrip(kvm, exits);
        double sandboxUs = SandboxReuse(kvm, 2000);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"netcore create_median_us={lat[n / 2]:F1} create_p99_us={lat[n * 99 / 100]:F1} seq_per_s={n / seqSeconds:F0} par2_per_s={(n / 2 * 2) / parSeconds:F0} exit_ns={exitNs:F0} sandbox_run_us={sandboxUs:F1}"));
        return 0;
    }

    [Tool("vm-create-steps", "Median time of each step of VM create/run/destroy with Netcore.Vm: vm-create-steps <iterations>")]
    public static int Steps(string[] args)
    {
        int n = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 2000;
        using var kvm = KvmSystem.Open();
        string[] names = ["memory", "create_vm", "set_memory", "create_vcpu", "setup", "run", "dispose_vm", "dispose_memory"];
        double[][] steps = names.Select(_ => new double[n]).ToArray();
        long[] t = new long[names.Length + 1];
        var warmup = Stopwatch.StartNew();
        for (int i = 0; i < 50 || warmup.ElapsedMilliseconds < 500; i++)
            CreateRunDestroy(kvm);
        for (int i = 0; i < n; i++)
        {
            t[0] = Stopwatch.GetTimestamp();
            var mem = GuestMemory.Create(128UL << 20);
            t[1] = Stopwatch.GetTimestamp();
            var vm = kvm.CreateVm(new VirtualMachineOptions { TssAddress = null });
            t[2] = Stopwatch.GetTimestamp();
            vm.SetMemory(mem);
            t[3] = Stopwatch.GetTimestamp();
            Vcpu cpu = vm.CreateVcpu(0);
            t[4] = Stopwatch.GetTimestamp();
            mem.Write(0x1000, FirstExitGuest);
            X86Setup.EnterRealMode(cpu, 0, 0x1000);
            t[5] = Stopwatch.GetTimestamp();
            if (cpu.Run().Reason != KvmExitReason.Io)
                throw new InvalidOperationException("unexpected first exit");
            t[6] = Stopwatch.GetTimestamp();
            vm.Dispose();
            t[7] = Stopwatch.GetTimestamp();
            mem.Dispose();
            t[8] = Stopwatch.GetTimestamp();
            for (int s = 0; s < names.Length; s++)
                steps[s][i] = Stopwatch.GetElapsedTime(t[s], t[s + 1]).TotalMicroseconds;
        }
        Console.WriteLine("netcore steps " + string.Join(" ", names.Select((name, s) =>
        {
            Array.Sort(steps[s]);
            return string.Create(CultureInfo.InvariantCulture, $"{name}={steps[s][n / 2]:F1}");
        })));
        return 0;
    }

    private static void CreateRunDestroy(KvmSystem kvm)
    {
        using var mem = GuestMemory.Create(128UL << 20);
        using var vm = kvm.CreateVm(new VirtualMachineOptions { TssAddress = null });
        vm.SetMemory(mem);
        Vcpu cpu = vm.CreateVcpu(0);
        mem.Write(0x1000, FirstExitGuest);
        X86Setup.EnterRealMode(cpu, 0, 0x1000);
        VcpuExit e = cpu.Run();
        if (e.Reason != KvmExitReason.Io)
            throw new InvalidOperationException($"unexpected first exit {e.Reason}");
    }

    private static double ExitRoundTrip(KvmSystem kvm, int exits)
    {
        using var mem = GuestMemory.Create(8UL << 20);
        using var vm = kvm.CreateVm(new VirtualMachineOptions { TssAddress = null });
        vm.SetMemory(mem);
        Vcpu cpu = vm.CreateVcpu(0);
        // CPL3 long mode: loop: out 0x10, al; jmp loop
        mem.Write(0x20_0000, new byte[] { 0xE6, 0x10, 0xEB, 0xFC });
        X86Setup.EnterLongMode(cpu, mem, 0x20_0000, 0x40_0000, new LongModeLayout { Cpl = 3, IdentityMapSize = 8UL << 20 });
        for (int i = 0; i < 1000; i++)
            cpu.Run();
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < exits; i++)
        {
            if (cpu.Run().Reason != KvmExitReason.Io)
                throw new InvalidOperationException("unexpected exit");
        }
        return Stopwatch.GetElapsedTime(t0).TotalNanoseconds / exits;
    }

    private static double SandboxReuse(KvmSystem kvm, int runs)
    {
        // mov rax, rsi; ret - returns the input length.
        using var sb = Sandbox.Create(kvm, [0x48, 0x89, 0xF0, 0xC3]);
        byte[] input = new byte[64];
        sb.Run(input);
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < runs; i++)
            sb.Run(input);
        return Stopwatch.GetElapsedTime(t0).TotalMicroseconds / runs;
    }
}
