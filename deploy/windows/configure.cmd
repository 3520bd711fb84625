@echo off
rem Points the service at the program files in this folder and (re)applies every NSSM setting.
rem Run by install.cmd and upgrade.cmd; run it yourself after editing %ProgramData%\Outpost\agent.env,
rem then restart the service (net stop OutpostAgent, net start OutpostAgent).
rem Note: NSSM's exit code is checked with "if errorlevel 1" on its own line (not "cmd || exit").
setlocal EnableExtensions
call "%~dp0common.cmd"
sc query "%SERVICE%" >nul 2>&1
if errorlevel 1 (
  echo configure: service %SERVICE% does not exist; run install.cmd first 1>&2
  exit /b 1
)
rem Environment: our two paths, then every KEY=VALUE line of agent.env (HTTPS_PROXY, NO_PROXY,
rem NODE_EXTRA_CA_CERTS, AGENT_* overrides). Values must not contain % or ".
set ENVLIST="AGENT_CONFIG=%DATA%\agent.json" "AGENT_TOKEN_FILE=%DATA%\agent-token" "NODE_ENV=production"
if exist "%DATA%\agent.env" for /f "usebackq eol=# tokens=* delims=" %%L in ("%DATA%\agent.env") do call :addenv "%%L"
set FAILED=
rem The service binary is this folder's nssm64.exe (after an upgrade the old folder can go), quoted:
rem an unquoted path with spaces would let C:\Program.exe run instead.
"%NSSM%" set "%SERVICE%" ImagePath "\"%APPDIR%\nssm64.exe\"" >nul 2>&1
if errorlevel 1 set FAILED=1
call :set Application "%APPDIR%\node.exe"
call :set AppDirectory "%APPDIR%"
call :set AppParameters "agent.mjs start"
rem NSSM checks a new environment by starting itself with it (suspended, then ended); that start can
rem fail for reasons other than the environment, so up to three tries, then NSSM's own words.
set ENVTRY=0
:envtry
set /a ENVTRY+=1
"%NSSM%" set "%SERVICE%" AppEnvironmentExtra %ENVLIST% >"%TEMP%\outpost-nssm-env.txt" 2>&1
if not errorlevel 1 goto envdone
if %ENVTRY% LSS 3 (
  ping -n 2 127.0.0.1 >nul 2>&1
  goto envtry
)
echo configure: cannot set the service environment (nssm set %SERVICE% AppEnvironmentExtra, %ENVTRY% tries); nssm said: 1>&2
type "%TEMP%\outpost-nssm-env.txt" 1>&2
del "%TEMP%\outpost-nssm-env.txt" >nul 2>&1
exit /b 1
:envdone
del "%TEMP%\outpost-nssm-env.txt" >nul 2>&1
call :set DisplayName "Outpost agent"
call :set Description "Outpost on-premise integration agent (runs %APPDIR%\agent.mjs)"
rem Logs: stdout and stderr to one file, renamed to agent-YYYYMMDDTHHMMSS.mmm.log once it passes
rem 10 MB (checked at start and while running; OUTPOST_LOG_ROTATE_BYTES overrides). NSSM deletes no
rem old file: remove them by age yourself.
if not defined OUTPOST_LOG_ROTATE_BYTES set "OUTPOST_LOG_ROTATE_BYTES=10485760"
call :set AppStdout "%DATA%\logs\agent.log"
call :set AppStderr "%DATA%\logs\agent.log"
call :set AppRotateFiles 1
call :set AppRotateOnline 1
call :set AppRotateBytes %OUTPOST_LOG_ROTATE_BYTES%
rem Stop: Ctrl-C (SIGINT in Node) drains; allow OUTPOST_STOP_TIMEOUT_MS (30 s; set it in agent.env
rem above shutdownGraceMs), then terminate the process tree (the window and thread methods mean
rem nothing to node.exe: skipped).
call :set AppStopMethodSkip 6
call :set AppStopMethodConsole %OUTPOST_STOP_TIMEOUT_MS%
rem Crash: restart after 2 s; a run shorter than 5 s counts as a failed start and NSSM backs off
rem further (NSSM reports START_PENDING for those 5 s after a start).
call :set AppExit Default Restart
call :set AppRestartDelay 2000
call :set AppThrottle 5000
rem Starts with Windows (tests set OUTPOST_START_TYPE=SERVICE_DEMAND_START).
if not defined OUTPOST_START_TYPE set "OUTPOST_START_TYPE=SERVICE_AUTO_START"
call :set Start %OUTPOST_START_TYPE%
if defined FAILED exit /b 1
echo configure: %SERVICE% runs %APPDIR%\node.exe agent.mjs start
exit /b 0

:set
"%NSSM%" set "%SERVICE%" %1 %2 %3 >nul 2>&1
if errorlevel 1 (
  echo configure: nssm set %SERVICE% %1 failed 1>&2
  set FAILED=1
)
exit /b 0

:addenv
if "%~1"=="" exit /b 0
set ENVLIST=%ENVLIST% "%~1"
exit /b 0
