@echo off
rem Stops (the agent drains first) and removes the service. Keeps %ProgramData%\Outpost (config,
rem token, logs) and the program files; delete them yourself when no longer needed.
setlocal EnableExtensions
call "%~dp0common.cmd"
sc query "%SERVICE%" >nul 2>&1
if errorlevel 1 (
  echo uninstall: service %SERVICE% does not exist
  exit /b 0
)
call "%APPDIR%\stop-service.cmd"
if errorlevel 1 exit /b 1
"%NSSM%" remove "%SERVICE%" confirm >nul 2>&1
if errorlevel 1 (
  echo uninstall: nssm remove %SERVICE% failed 1>&2
  exit /b 1
)
echo uninstall: service %SERVICE% removed; %DATA% kept
exit /b 0
