// A PowerShell host for the Pester tests that run commands as a person types them (FirstRun.Tests.ps1,
// Examples.Tests.ps1, Follow.Tests.ps1), loaded with Add-Type -Path:
//   RecordingHost    a host of a given window size, with or without VT support, that records what is written to it
//                    (text, warnings, progress) and answers credential prompts: with the password set for the user
//                    in Passwords, else with the last password a warning said was generated (a first start shows it
//                    so), as a person would copy it from the screen.
// It does not read input: any other prompt fails the command, as it would on a host without a person.
//   ChildOutput      the lines a child process writes to stdout and stderr, collected as they come.
#nullable enable
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Security;
using System.Text;
using System.Text.RegularExpressions;

namespace QmTunnel.PesterTools
{
    public sealed class RecordingHost : PSHost
    {
        private readonly RecordingHostUI _ui;
        private readonly Guid _id = Guid.NewGuid();

        public RecordingHost(int width, int height, bool virtualTerminal)
        {
            _ui = new RecordingHostUI(new RecordingRawUI(width, height), virtualTerminal);
        }

        public RecordingHostUI Recorder => _ui;
        public override PSHostUserInterface UI => _ui;
        public override string Name => "QmTunnelTestHost";
        public override Version Version => new Version(1, 0);
        public override Guid InstanceId => _id;
        public override CultureInfo CurrentCulture => CultureInfo.InvariantCulture;
        public override CultureInfo CurrentUICulture => CultureInfo.InvariantCulture;
        public override void SetShouldExit(int exitCode) { }
        public override void EnterNestedPrompt() => throw new NotSupportedException("no nested prompts in tests");
        public override void ExitNestedPrompt() => throw new NotSupportedException("no nested prompts in tests");
        public override void NotifyBeginApplication() { }
        public override void NotifyEndApplication() { }
    }

    public sealed class RecordingHostUI : PSHostUserInterface
    {
        private readonly object _gate = new object();
        private readonly StringBuilder _text = new StringBuilder();
        private readonly RecordingRawUI _raw;
        private readonly bool _virtualTerminal;

        internal RecordingHostUI(RecordingRawUI raw, bool virtualTerminal)
        {
            _raw = raw;
            _virtualTerminal = virtualTerminal;
        }

        /// <summary>Password to answer a credential prompt with, per user name (case-insensitive).</summary>
        public Dictionary<string, string> Passwords { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);

        /// <summary>The password typed when nothing else applies (a new admin's, a Read-Host -AsSecureString); none when null.</summary>
        public string? DefaultPassword { get; set; }

        /// <summary>The last password a warning said was generated ("... generated password XYZ .").</summary>
        public string? GeneratedPassword { get; private set; }

        public List<string> Warnings { get; } = new List<string>();
        public List<string> Prompts { get; } = new List<string>();
        public List<ProgressRecord> Progress { get; } = new List<ProgressRecord>();

        /// <summary>Everything written as text (Write, WriteLine, errors), escape sequences included.</summary>
        public string Text { get { lock (_gate) { return _text.ToString(); } } }

        public void ClearText() { lock (_gate) { _text.Clear(); } }

        public override bool SupportsVirtualTerminal => _virtualTerminal;
        public override PSHostRawUserInterface RawUI => _raw;

        public override void Write(string value) { lock (_gate) { _text.Append(value); } }
        public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) => Write(value);
        public override void WriteLine(string value) => Write(value + "\n");
        public override void WriteErrorLine(string value) => Write(value + "\n");
        public override void WriteDebugLine(string message) { }
        public override void WriteVerboseLine(string message) { }

        public override void WriteWarningLine(string message)
        {
            lock (_gate)
            {
                Warnings.Add(message);
                var generated = Regex.Match(message, @"generated password (\S+) \.");
                if (generated.Success)
                {
                    GeneratedPassword = generated.Groups[1].Value;
                }
            }
        }

        public override void WriteProgress(long sourceId, ProgressRecord record) { lock (_gate) { Progress.Add(record); } }

        public override string ReadLine() => throw new InvalidOperationException("the test host reads no input");
        public override SecureString ReadLineAsSecureString() =>
            DefaultPassword is { } typed ? Secure(typed) : throw new InvalidOperationException("the test host reads no input");

        private static SecureString Secure(string text)
        {
            var secure = new SecureString();
            foreach (var c in text)
            {
                secure.AppendChar(c);
            }
            secure.MakeReadOnly();
            return secure;
        }

        public override Dictionary<string, PSObject> Prompt(string caption, string message, System.Collections.ObjectModel.Collection<FieldDescription> descriptions) =>
            throw new InvalidOperationException($"the test host answers credential prompts only (asked: {caption} {message})");

        public override int PromptForChoice(string caption, string message, System.Collections.ObjectModel.Collection<ChoiceDescription> choices, int defaultChoice) =>
            throw new InvalidOperationException($"the test host answers credential prompts only (asked: {caption} {message})");

        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) =>
            PromptForCredential(caption, message, userName, targetName, PSCredentialTypes.Default, PSCredentialUIOptions.Default);

        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName,
            PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options)
        {
            string? password;
            lock (_gate)
            {
                Prompts.Add(userName);
                if (!Passwords.TryGetValue(userName ?? string.Empty, out password))
                {
                    password = GeneratedPassword ?? DefaultPassword;
                }
            }
            if (password is null)
            {
                throw new InvalidOperationException($"the test host has no password for '{userName}'");
            }
            return new PSCredential(userName ?? string.Empty, Secure(password));
        }
    }

    public sealed class RecordingRawUI : PSHostRawUserInterface
    {
        private readonly Size _size;

        public RecordingRawUI(int width, int height)
        {
            _size = new Size(width, height);
        }

        public override ConsoleColor BackgroundColor { get; set; } = ConsoleColor.Black;
        public override ConsoleColor ForegroundColor { get; set; } = ConsoleColor.Gray;
        public override Size BufferSize { get => new Size(_size.Width, 9999); set { } }
        public override Coordinates CursorPosition { get; set; }
        public override int CursorSize { get; set; } = 1;
        public override bool KeyAvailable => false;
        public override Size MaxPhysicalWindowSize => _size;
        public override Size MaxWindowSize => _size;
        public override Coordinates WindowPosition { get; set; }
        public override Size WindowSize { get => _size; set { } }
        public override string WindowTitle { get; set; } = "qmTunnel tests";
        public override void FlushInputBuffer() { }
        public override BufferCell[,] GetBufferContents(Rectangle rectangle) => throw new NotSupportedException();
        public override KeyInfo ReadKey(ReadKeyOptions options) => throw new InvalidOperationException("the test host reads no keys");
        public override void ScrollBufferContents(Rectangle source, Coordinates destination, Rectangle clip, BufferCell fill) { }
        public override void SetBufferContents(Coordinates origin, BufferCell[,] contents) { }
        public override void SetBufferContents(Rectangle rectangle, BufferCell fill) { }
    }

    public sealed class ChildOutput
    {
        private readonly ConcurrentQueue<string> _lines = new ConcurrentQueue<string>();

        private ChildOutput() { }

        /// <summary>Starts reading the redirected stdout and stderr of a started process.</summary>
        public static ChildOutput Attach(Process process)
        {
            var output = new ChildOutput();
            process.OutputDataReceived += (_, e) => { if (e.Data != null) { output._lines.Enqueue(e.Data); } };
            process.ErrorDataReceived += (_, e) => { if (e.Data != null) { output._lines.Enqueue(e.Data); } };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return output;
        }

        public string[] Lines => _lines.ToArray();
    }
}
