<#
.SYNOPSIS
    Set up IFEval scoring on a Windows laptop: a virtual environment with
    requirements-score.txt (no torch), nltk's punkt_tab data, and a self-check.

.DESCRIPTION
    Works in Windows PowerShell 5.1 and PowerShell 7. Safe to run again: it reuses the
    environment, pip skips what is installed, and punkt_tab is fetched only if nltk cannot
    find it (NLTK_DATA is honoured).

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File .\setup_ifeval.ps1

.EXAMPLE
    .\setup_ifeval.ps1 -VenvDir C:\venvs\ifeval -Python "C:\Python312\python.exe"

.EXAMPLE
    .\setup_ifeval.ps1 -SkipInstall    # no pip: the packages are already importable
#>
[CmdletBinding()]
param(
    # Where the environment goes (default: $env:VENV_DIR, else .venv-score next to this script).
    [string]$VenvDir = $env:VENV_DIR,
    # The Python that creates it (default: $env:SFTEVAL_PYTHON, else the py launcher, else python).
    [string]$Python = $env:SFTEVAL_PYTHON,
    [switch]$SkipInstall
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

function Write-Step([string]$Message) {
    Write-Host "==> $Message"
}

function Stop-Setup([string]$Message) {
    Write-Host "setup_ifeval: $Message" -ForegroundColor Red
    exit 1
}

# Runs a program; stops the setup with $Failure when it exits non-zero (native programs
# do not raise PowerShell errors, so every call checks $LASTEXITCODE).
function Invoke-Checked([string]$Program, [string[]]$Arguments, [string]$Failure) {
    & $Program @Arguments
    if ($LASTEXITCODE -ne 0) {
        Stop-Setup $Failure
    }
}

$Root = $PSScriptRoot
if (-not $VenvDir) {
    $VenvDir = Join-Path $Root '.venv-score'
}

# The py launcher is the reliable way to reach a real Python on Windows; a bare `python`
# may be the Microsoft Store stub, which the version check below catches.
$BaseArgs = @()
if (-not $Python) {
    if (Get-Command py -ErrorAction SilentlyContinue) {
        $Python = 'py'
        $BaseArgs = @('-3')
    }
    elseif (Get-Command python -ErrorAction SilentlyContinue) {
        $Python = 'python'
    }
    else {
        Stop-Setup 'Python not found; install Python 3.10+ from python.org or set SFTEVAL_PYTHON'
    }
}
Invoke-Checked $Python ($BaseArgs + @('-c', 'import sys; sys.exit(sys.version_info < (3, 10))')) `
    "$Python is not Python 3.10 or newer; install it from python.org or set SFTEVAL_PYTHON"

# Windows venvs keep python in Scripts\; PowerShell 7 on Linux or macOS makes bin/.
function Get-VenvPython {
    $Windows = Join-Path $VenvDir 'Scripts\python.exe'
    $Posix = Join-Path (Join-Path $VenvDir 'bin') 'python'
    foreach ($Candidate in @($Windows, $Posix)) {
        if (Test-Path $Candidate) {
            return $Candidate
        }
    }
    return $null
}

$VenvPython = Get-VenvPython
if ($VenvPython) {
    Write-Step "reusing the virtual environment $VenvDir"
}
else {
    Write-Step "creating a virtual environment in $VenvDir"
    Invoke-Checked $Python ($BaseArgs + @('-m', 'venv', $VenvDir)) "could not create $VenvDir"
    $VenvPython = Get-VenvPython
    if (-not $VenvPython) {
        Stop-Setup "$VenvDir has no python after creating it"
    }
}

if ($SkipInstall) {
    Write-Step 'skipping pip install (-SkipInstall)'
}
else {
    Write-Step "installing requirements-score.txt (pip says 'already satisfied' on a second run)"
    $Requirements = Join-Path $Root 'requirements-score.txt'
    Invoke-Checked $VenvPython @('-m', 'pip', 'install', '--disable-pip-version-check', '-r', $Requirements) `
        'pip install failed; check the network, or a proxy ($env:HTTPS_PROXY)'
}

# The same lookup eval_score.py makes: nltk.data.path, which includes NLTK_DATA. Python code
# goes in on stdin: Windows PowerShell 5.1 drops the double quotes inside native arguments.
$FindPunkt = @'
import nltk, sys
try:
    print(nltk.data.find("tokenizers/punkt_tab/english/"))
except LookupError:
    sys.exit(1)
'@
$PunktPath = $FindPunkt | & $VenvPython '-'
if ($LASTEXITCODE -eq 0) {
    Write-Step "nltk punkt_tab found: $PunktPath"
}
else {
    Write-Step 'downloading nltk punkt_tab'
    $Download = @'
import os, socket, sys
import nltk
socket.setdefaulttimeout(30)
target = os.environ.get("NLTK_DATA", "").split(os.pathsep)[0] or None
sys.exit(0 if nltk.download("punkt_tab", download_dir=target, quiet=True) else 1)
'@
    $Download | & $VenvPython '-'
    if ($LASTEXITCODE -ne 0) {
        Stop-Setup ('could not download punkt_tab; on a machine with internet run: python -m nltk.downloader punkt_tab, ' +
            'then copy its nltk_data folder here and set NLTK_DATA')
    }
    $PunktPath = $FindPunkt | & $VenvPython '-'
    if ($LASTEXITCODE -ne 0) {
        Stop-Setup 'punkt_tab was downloaded but nltk cannot find it; set NLTK_DATA'
    }
    Write-Step "nltk punkt_tab installed: $PunktPath"
}

Write-Step 'self-check: scoring two built-in responses'
Push-Location $Root
try {
    Invoke-Checked $VenvPython @('eval_score.py', '--self-check') 'the self-check failed (see above)'
}
finally {
    Pop-Location
}

$Activate = Join-Path (Split-Path $VenvPython) 'Activate.ps1'
Write-Step "ready. Activate with:  & '$Activate'   (in this session: Set-ExecutionPolicy -Scope Process Bypass)"
Write-Step 'then score:            python eval_score.py --input eval_responses\<file>.json'
Write-Step "or, without activating: & '$VenvPython' eval_score.py --input eval_responses\<file>.json"
