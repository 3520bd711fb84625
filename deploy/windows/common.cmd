@rem Shared by install.cmd, configure.cmd, upgrade.cmd, stop-service.cmd, uninstall.cmd (not run on its own).
@rem Sets SERVICE, APPDIR (this folder, no trailing backslash: NSSM's AppDirectory must not end in one),
@rem DATA (config, token, agent.env, logs; kept by upgrade and uninstall), NSSM, and
@rem OUTPOST_STOP_TIMEOUT_MS: how long a stop may take before node.exe is terminated; 30000 by default,
@rem above the agent's default shutdownGraceMs (20 s). Raise it in agent.env with a longer grace.
if not defined OUTPOST_SERVICE set "OUTPOST_SERVICE=OutpostAgent"
set "SERVICE=%OUTPOST_SERVICE%"
set "APPDIR=%~dp0"
set "APPDIR=%APPDIR:~0,-1%"
set "DATA=%ProgramData%\Outpost"
set "NSSM=%APPDIR%\nssm64.exe"
set "OUTPOST_STOP_TIMEOUT_MS=30000"
if exist "%DATA%\agent.env" for /f "usebackq eol=# tokens=1,* delims==" %%A in ("%DATA%\agent.env") do if /i "%%A"=="OUTPOST_STOP_TIMEOUT_MS" set /a "OUTPOST_STOP_TIMEOUT_MS=%%B"
if %OUTPOST_STOP_TIMEOUT_MS% LSS 1000 (
  echo agent.env: OUTPOST_STOP_TIMEOUT_MS must be a number of milliseconds, at least 1000; using 30000 1>&2
  set "OUTPOST_STOP_TIMEOUT_MS=30000"
)
exit /b 0
