using System.Text;
using Netcore.Scheduler.Jobs;

namespace Netcore.Scheduler.Tests;

/// <summary>Linux microVM jobs (Netcore.Vm MicroVm inside a worker): need VT-x/AMD-V; on PVM they skip with the preflight reason.</summary>
[Collection(RealSchedulerCollection.Name)]
public sealed class LinuxJobTests(ITestOutputHelper output)
{
    [LinuxFact(HardwareVirtualization = true)]
    public async Task ALinuxMicroVmJobBootsTheHostKernelAndReturnsItsConsole()
    {
        string? kernel = Directory.Exists("/boot") ? Directory.GetFiles("/boot", "vmlinuz-*").Order(StringComparer.Ordinal).LastOrDefault() : null;
        Assert.True(kernel is not null, "no /boot/vmlinuz-* to boot");
        await using var ts = TestScheduler.Start(output, cgroups: false);
        ts.Tenant("vm");
        // No initramfs and no root disk: the kernel boots, finds no root and panics; panic=1 reboot=k
        // reboots through the i8042, which ends the run.
        JobRecord job = ts.Scheduler.Submit(new JobSpec("vm", JobKind.Linux, 0, null, [], 60_000, 256,
            new LinuxSpec(kernel!, null, "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux", 1)));
        JobRecord done = await ts.Scheduler.WhenFinishedAsync(job.Id).WaitAsync(TimeSpan.FromSeconds(120));
        string console = Encoding.ASCII.GetString(done.Output ?? []);
        output.WriteLine($"{done.State}: {done.Reason}\n{console}");
        Assert.Contains("Linux version", console, StringComparison.Ordinal);
        Assert.Equal(JobState.Succeeded, done.State);
    }
}
