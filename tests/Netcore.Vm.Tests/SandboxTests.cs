using System.Buffers.Binary;
using Netcore.Vm.Sandboxing;
using Netcore.Vm.Kvm;

namespace Netcore.Vm.Tests;

public sealed class SandboxTests(ITestOutputHelper output)
{
    // movzx eax, byte [rdi]; cmp al, 1; je fault; cmp al, 2; je spin; mov eax, 7; ret
    // fault: mov byte [0], 1; spin: jmp spin
    private static readonly byte[] Branchy =
    [
        0x0F, 0xB6, 0x07, 0x3C, 0x01, 0x74, 0x0A, 0x3C, 0x02, 0x74, 0x0E, 0xB8, 0x07, 0x00, 0x00, 0x00, 0xC3,
        0xC6, 0x04, 0x25, 0x00, 0x00, 0x00, 0x00, 0x01, 0xEB, 0xFE,
    ];

    [LinuxFact(Kvm = true)]
    public void HostFunctionReadsTheGuestBufferAndReturnsToTheGuest()
    {
        using var kvm = KvmSystem.Open();
        // mov eax, 5; out 0xE0, eax; ret   (RDI/RSI already hold the input pointer and length)
        using var sb = Sandbox.Create(kvm, [0xB8, 0x05, 0x00, 0x00, 0x00, 0xE7, 0xE0, 0xC3]);
        sb.RegisterHostFunction(5, (in SandboxCall c) =>
        {
            ulong sum = 0;
            foreach (byte b in c.Sandbox.Memory.GetSpan(c.Arg0, (int)c.Arg1))
                sum += b;
            return sum;
        });
        SandboxResult r = sb.Run([1, 2, 3, 250]);
        Assert.Equal(256UL, r.ReturnValue);
        Assert.Equal(1, r.HostCalls);
    }

    [LinuxFact(Kvm = true, Tools = ["gcc", "objcopy"])]
    public void CompiledGuestChecksumsAHostBufferAtNativeSpeed()
    {
        string dir = Directory.CreateTempSubdirectory("nc-sandbox-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "prog.c"), """
                typedef unsigned long u64;
                static inline u64 hostcall(u64 n, u64 a0, u64 a1) {
                    u64 r;
                    __asm__ volatile("outl %%eax, $0xe0" : "=a"(r) : "a"(n), "D"(a0), "S"(a1) : "memory");
                    return r;
                }
                __attribute__((section(".text.entry")))
                u64 entry(const unsigned char *in, u64 len, unsigned char *out, u64 cap) {
                    u64 h = 0xcbf29ce484222325UL;            /* FNV-1a 64 */
                    for (u64 i = 0; i < len; i++) { h ^= in[i]; h *= 0x100000001b3UL; }
                    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(h >> (8 * i));
                    u64 ack = hostcall(1, (u64)out, 8);      /* host reads the result buffer */
                    return h ^ ack;
                }
                """);
            File.WriteAllText(Path.Combine(dir, "link.ld"), """
                SECTIONS { . = 0x201000; .text : { *(.text.entry) *(.text*) *(.rodata*) *(.data*) *(.bss*) }
                           /DISCARD/ : { *(.comment) *(.note*) *(.eh_frame*) } }
                """);
            Shell.ShOk($"cd {dir} && gcc -O2 -ffreestanding -fno-pic -fno-pie -no-pie -nostdlib -fno-stack-protector -mno-red-zone " +
                       "-fcf-protection=none -static -Wl,-T,link.ld -Wl,-e,entry -o prog.elf prog.c && objcopy -O binary -j .text prog.elf prog.bin");
            byte[] program = File.ReadAllBytes(Path.Combine(dir, "prog.bin"));

            using var kvm = KvmSystem.Open();
            using var sb = Sandbox.Create(kvm, program);
            ulong seen = 0;
            sb.RegisterHostFunction(1, (in SandboxCall c) =>
            {
                seen = BinaryPrimitives.ReadUInt64LittleEndian(c.Sandbox.Memory.GetSpan(c.Arg0, (int)c.Arg1));
                return 0x5A5A;
            });
            byte[] input = new byte[4 << 20];
            new Random(42).NextBytes(input);
            ulong expected = 0xcbf29ce484222325UL;
            foreach (byte b in input)
                expected = (expected ^ b) * 0x100000001b3UL;

            SandboxResult r = sb.Run(input);
            output.WriteLine($"FNV-1a over 4 MiB in the guest: {r.Elapsed.TotalMilliseconds:F2} ms");
            Assert.Equal(expected, seen);
            Assert.Equal(expected ^ 0x5A5A, r.ReturnValue);
            Assert.Equal(expected, BinaryPrimitives.ReadUInt64LittleEndian(sb.GetOutput(8)));
            // Reuse after the automatic reset: same answer on a different input.
            r = sb.Run([1, 2, 3]);
            ulong small = 0xcbf29ce484222325UL;
            foreach (byte b in new byte[] { 1, 2, 3 })
                small = (small ^ b) * 0x100000001b3UL;
            Assert.Equal(small ^ 0x5A5A, r.ReturnValue);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [LinuxFact(Kvm = true)]
    public void FaultingAndRunawayGuestsAreStoppedAndTheSandboxIsReusable()
    {
        using var kvm = KvmSystem.Open();
        // 2 s: the runaway run must time out, and a normal run (a few instructions) must not, even if
        // its vCPU thread is preempted for a while on a loaded machine right after the timer starts.
        using var sb = Sandbox.Create(kvm, Branchy, new SandboxOptions { Timeout = TimeSpan.FromSeconds(2) });
        Assert.Equal(7UL, sb.Run([0]).ReturnValue);

        var fault = Assert.Throws<SandboxFaultException>(() => sb.Run([1]));
        output.WriteLine(fault.Message);
        Assert.Equal(KvmExitReason.Shutdown, fault.Reason);
        Assert.Equal(Sandbox.ProgramAddress + 17, fault.Rip);
        Assert.Equal(7UL, sb.Run([0]).ReturnValue);

        var timeout = Assert.Throws<SandboxTimeoutException>(() => sb.Run([2]));
        output.WriteLine(timeout.Message);
        Assert.Equal(Sandbox.ProgramAddress + 25, timeout.Rip);
        Assert.Equal(7UL, sb.Run([0]).ReturnValue);
    }

    [LinuxFact(Kvm = true)]
    public void EachRunStartsFromTheSnapshot()
    {
        using var kvm = KvmSystem.Open();
        // mov rax, [0x300000]; inc rax; mov [0x300000], rax; ret  - a counter in guest memory
        byte[] counter = [0x48, 0x8B, 0x04, 0x25, 0x00, 0x00, 0x30, 0x00, 0x48, 0xFF, 0xC0, 0x48, 0x89, 0x04, 0x25, 0x00, 0x00, 0x30, 0x00, 0xC3];
        using var sb = Sandbox.Create(kvm, counter);
        Assert.Equal(1UL, sb.Run([]).ReturnValue);
        Assert.Equal(1UL, sb.Run([]).ReturnValue);
        sb.Memory.Write<ulong>(0x30_0000, 41);
        sb.TakeSnapshot();
        Assert.Equal(42UL, sb.Run([]).ReturnValue);
        Assert.Equal(42UL, sb.Run([]).ReturnValue);
    }

    [LinuxFact(Kvm = true)]
    public void UnknownHostCallAnswersEnosys()
    {
        using var kvm = KvmSystem.Open();
        // mov eax, 99; out 0xE0, eax; ret
        using var sb = Sandbox.Create(kvm, [0xB8, 99, 0, 0, 0, 0xE7, 0xE0, 0xC3]);
        Assert.Equal(unchecked((ulong)-38), sb.Run([]).ReturnValue);
    }
}
